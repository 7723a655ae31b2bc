"""``report.html``: one self-contained page (images embedded) with every figure and number.

One section per question of spec §3, each with its figures and the interpretations of :mod:`viclab.report.interpret`, a
results table, the time each stage took and the provenance of the run.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from viclab.config.detect import TERMS  # the three terms (the loss is their weighted sum)
from viclab.core.io import atomic_write_text
from viclab.engine.rundir import METRICS, read_metrics
from viclab.plot.figures import curves_png
from viclab.report.interpret import interpret, interpret_detection, interpret_sound, pct

# Display names; also the keys of the results table, in report order.
METHODS = {"vicreg": "VICReg", "no_variance": "VICReg, μ = 0", "neighbours": "neighbour views",
           "latent_naive": "latent codes, naive pairs", "latent_graph": "latent codes, graph pairs",
           "eigenmaps": "Laplacian Eigenmaps"}
REPORT = "report.html"
CURVE_RUNS = ("vicreg", "no_variance")  # S1 and its mu = 0 contrast
LATENT_RUNS = ("latent_naive", "latent_graph")

CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2430;margin:0;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:36px 0 8px;border-bottom:2px solid #e3e7ee;
padding-bottom:4px}.sub{color:#5b6575;margin:0 0 16px}nav a{margin-right:12px;font-size:13px}
table{border-collapse:collapse;margin:10px 0;font-size:13.5px}th,td{padding:5px 10px;border-bottom:1px solid #e3e7ee;
text-align:right}td{white-space:nowrap}td:first-child{white-space:normal}th:first-child,td:first-child{text-align:left}th{background:#f0f3f7}td.best{font-weight:700}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px;align-items:start}
figure{margin:8px 0;background:#fbfcfd;border:1px solid #e3e7ee;border-radius:6px;padding:8px}
figure img{width:100%;height:auto;display:block}figcaption{font-size:12.5px;color:#5b6575;margin-top:4px}
.note{background:#eef5ff;border-left:4px solid #4a86e8;padding:8px 12px;margin:10px 0;border-radius:3px}
.note p{margin:4px 0}code{background:#f0f3f7;padding:1px 4px;border-radius:3px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}.card{border:1px solid #e3e7ee;border-radius:6px;
padding:8px 14px;min-width:150px}.card b{display:block;font-size:22px}.card span{font-size:12px;color:#5b6575}
"""


# How a file is embedded, by its suffix: a data URI (so the report opens offline).
_ELEMENTS = {".png": '<img src="data:image/png;base64,{data}" alt="{alt}">',
             ".wav": '<audio controls preload="none" src="data:audio/wav;base64,{data}"></audio>'}


def _fig(path: Path, caption: str) -> str:
    """A PNG image or WAV sound embedded in the page, with its caption."""
    if not path.exists():
        return f"<figure><figcaption>missing file: {html.escape(path.name)}</figcaption></figure>"
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<figure>{_ELEMENTS[path.suffix].format(data=data, alt=html.escape(caption))}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _notes(lines: list[str]) -> str:
    return ('<div class="note">' + "".join(f"<p>{html.escape(s[:1].upper() + s[1:])}</p>" for s in lines)
            + "</div>") if lines else ""


def _grid(*items: str) -> str:
    return '<div class="grid">' + "".join(items) + "</div>"


def _series(records: list[dict[str, Any]], split: str, term: str) -> tuple[np.ndarray, np.ndarray]:
    recs = [r for r in records if r["split"] == split]
    return np.array([r["step"] for r in recs]), np.array([r[term] for r in recs])


def curve_figures(study_dir: Path, curves: dict[str, list[dict[str, Any]]], runs: tuple[str, ...] = CURVE_RUNS,
                  terms: tuple[str, ...] = TERMS, prefix: str = "") -> list[Path]:
    """One figure per VICReg term (spec S1): per-batch training values and per-epoch test values."""
    paths = []
    for term in terms:
        series = [(METHODS[m], *_series(curves.get(m, []), "train", term), *_series(curves.get(m, []), "test", term))
                  for m in runs]
        title = f"{term} term: training batches" + ("" if prefix else " and test set")
        paths.append(curves_png(series, term, title, study_dir / "figures" / f"{prefix}{term}.png"))
    return paths


# The results table's columns: (key, header, format, the best value in bold).
_COLUMNS = [("linear_top1", "linear top-1", pct, True), ("linear_top5", "linear top-5", pct, True),
            ("knn_top1", "kNN top-1", pct, True), ("precision_at_k", "precision@k", pct, True),
            ("auroc", "AUROC", "{:.3f}".format, True), ("silhouette", "silhouette", "{:.3f}".format, False),
            ("ari", "ARI vs classes", "{:.3f}".format, True), ("pca2_share", "variance in 2 PCs", pct, False),
            ("effective_rank", "effective rank", "{:.1f}".format, False),
            ("train_seconds", "time", "{:.0f} s".format, False)]


def _table(rows: list[dict[str, Any]]) -> str:
    best = {k: max((r[k] for r in rows if r[k] is not None), default=None) for k, _, _, bold in _COLUMNS if bold}
    head = "<tr><th>method</th><th>probe data (train / test)</th>" + "".join(f"<th>{h}</th>" for _, h, _, _ in _COLUMNS)
    body = []
    for r in rows:
        data = f"{r['n_train']} / {r['n_test']}" + (" codes" if r["method"].startswith("latent") else "")
        cells = "".join(f'<td class="{"best" if r[k] is not None and best.get(k) == r[k] else ""}">'
                        f'{"—" if r[k] is None else fmt(r[k])}</td>' for k, _, fmt, _ in _COLUMNS)
        body.append(f"<tr><td>{html.escape(r['name'])}</td><td>{data}</td>{cells}</tr>")
    return f"<table>{head}</tr>{''.join(body)}</table>"


def _detection(study_dir: Path, results: dict[str, Any]) -> str:
    """The §4 section: the one-class table, ROC/PR of every detector, top anomalies, the monitor."""
    det = results["stages"].get("detect")
    if det is None:
        return "<p>Not part of this study.</p>"
    names = list(det["per_class"][0]["metrics"])
    best = max(det["mean_auroc"][n] for n in names)
    head = "<tr><th>detector</th>" + "".join(f"<th>class {html.escape(r['class'])}</th>" for r in det["per_class"]) \
        + "<th>mean</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{r['metrics'][n]['auroc']:.3f}</td>" for r in det["per_class"])
        + f'<td class="{"best" if det["mean_auroc"][n] == best else ""}">{det["mean_auroc"][n]:.3f}</td></tr>'
        for n in names)
    d, c = study_dir / "detect", html.escape(det["first_class"])
    return (_notes(interpret_detection(det))
            + "<p>AUROC of each detector on each one-class problem: fitted on that class's training images, tested "
              "on every test image (that class normal, the others anomalous). <code>vicreg_terms:q</code>: the "
              "frozen VICReg model's per-image quantity q.</p>"
            + f"<table>{head}{body}</table>"
            + _grid(_fig(d / "roc_pr.png", f"class {c} normal: ROC (pAUC range FPR ≤ 0.1 shaded) and precision-recall "
                                           "of every detector"),
                    _fig(d / "monitor" / "monitor.png", f"class {c}: VICReg's three terms per batch over a stream of "
                                                        "normal and anomalous batches (anomalous stretches shaded)"))
            + _fig(d / "top_anomalies.png", f"class {c} normal: the most anomalous test images of each detector "
                                            "(true class, score)"))


def _sound(study_dir: Path, results: dict[str, Any]) -> str:
    """The sound section: machine sounds with every detector, spoken digits probed, Griffin-Lim."""
    machines, fsdd = results["stages"].get("sound_machines"), results["stages"].get("sound_fsdd")
    if machines is None and fsdd is None:
        return "<p>Not part of this study (study.sound=false).</p>"
    parts = [_notes(interpret_sound(machines, fsdd))]
    if machines:
        d, first = study_dir / "sound" / "machines", machines["first_machine"]
        for machine, r in machines["machines"].items():
            best = max(r["mean_id_auroc"].values())
            head = ("<tr><th>detector</th>" + "".join(f"<th>{html.escape(i)}</th>" for i in r["ids"])
                    + "<th>mean AUC / pAUC</th><th>all clips: AUC [95% interval]</th><th>fit</th></tr>")
            body = "".join(
                f"<tr><td>{html.escape(n)}</td>" + "".join(
                    f"<td>{r['per_id'][n][i]['auroc']:.2f} / {r['per_id'][n][i]['pauc']:.2f}</td>" for i in r["ids"])
                + f'<td class="{"best" if r["mean_id_auroc"][n] == best else ""}">{r["mean_id_auroc"][n]:.3f} / '
                  f'{r["mean_id_pauc"][n]:.3f}</td><td>{r["all"][n]["auroc"]:.3f} '
                  f'[{r["all"][n]["auroc_interval"][0]:.2f}, '
                  f'{r["all"][n]["auroc_interval"][1]:.2f}]</td><td>{r["fit_seconds"][n]:.0f} s</td></tr>'
                for n in r["per_id"])
            parts.append(f"<h3>{html.escape(machine)}</h3><p>AUC / pAUC (FPR ≤ 0.1) per machine ID.</p>"
                         f"<table>{head}{body}</table>")
        parts += [
            _grid(*(_fig(d / f"roc_{m}.png", f"{m}: ROC (pAUC range shaded) and precision-recall, all machine IDs "
                                             "together") for m in machines["machines"])),
            _fig(d / "spectrograms.png", f"{first}: log-mel spectrograms of normal and abnormal test clips"),
            _grid(_fig(d / "resynth_plain" / "original.wav", f"an abnormal {first} clip, as analysed"),
                  _fig(d / "resynth_plain" / "resynth.wav", "resynthesised from its log-mel spectrogram"),
                  _fig(d / "resynth_autoencoder" / "resynth.wav",
                       "resynthesised from the autoencoder's reconstruction"))
            + _fig(d / "resynth_autoencoder" / "spectrograms.png", "the clip's log-mel spectrogram, the autoencoder's "
                                                                   "reconstruction, and the resynthesised audio's")]
    if fsdd:
        d, pr = study_dir / "sound" / "fsdd", fsdd["probe"]
        parts.append("<h3>Spoken digits (FSDD)</h3><table><tr><th>encoder</th><th>linear top-1</th><th>top-5</th>"
                     "</tr>" + "".join(f"<tr><td>{n}</td><td>{pct(pr[k]['top1'])}</td><td>{pct(pr[k]['top5'])}</td>"
                                       f"</tr>" for k, n in (("vicreg", "VICReg"), ("random", "random init")))
                     + "</table>")
        parts.append(_fig(d / "spectrograms.png", "one held-out speaker's clip per digit")
                     + _grid(_fig(d / "resynth" / "original.wav", "a spoken digit"),
                             _fig(d / "resynth" / "resynth.wav",
                                  "resynthesised from its log-mel spectrogram (Griffin-Lim)"))
                     + _fig(d / "resynth" / "spectrograms.png", "original and resynthesised log-mel spectrograms"))
    return "".join(parts)


def _sections(study_dir: Path, results: dict[str, Any],
              curves: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, str]]:
    """The page's sections in order, as ``(id, title, HTML body)``; ``curves``: method -> ``metrics.jsonl`` records."""
    ev, cfg, text = study_dir / "eval", results["config"], interpret(results, curves)
    k, anomalies = cfg["eval"]["retrieval_k"], results["stages"]["anomaly"]["anomalies"]
    pair = ("vicreg", "neighbours")
    return [
        ("S1", "S1 · Training curves", _notes(text.get("S1", [])) + _grid(*(
            _fig(p, f"{t}: per training batch (faint; running mean on top) and on the test set before training "
                    "and after each epoch") for p, t in zip(curve_figures(study_dir, curves), TERMS)))),
        ("S2", "S2 · Test representations in 2-D", _notes(text["S2"])
         + _grid(_fig(ev / "vicreg" / "pca.png", "VICReg: PCA of the test representations, coloured by class"),
                 _fig(ev / "vicreg" / "tsne.png", "VICReg: t-SNE of the test representations, coloured by class"))),
        ("S3", "S3 · Linear probe", _notes(text["S3"])),
        ("S4", "S4 · Without the variance term (μ = 0)", _notes(text["S4"])
         + _grid(_fig(ev / "no_variance" / "pca.png", "μ = 0: PCA of the test representations"),
                 _fig(ev / "vicreg" / "pca.png", "VICReg (μ = 25): PCA of the test representations, for comparison"))),
        ("S5", "S5 · Latent optimisation: a free code per image", _notes(text["S5"]) + _grid(*(
            _fig(p, f"latent codes, {t} term per training batch: naive pairs and graph pairs")
            for p, t in zip(curve_figures(study_dir, curves, LATENT_RUNS, TERMS[:2], "latent_"), TERMS[:2])))),
        ("S6", "S6 · Neighbours as views", _notes(text["S6"])
         + _grid(_fig(ev / "neighbours" / "pca.png", "neighbour views: PCA of the test representations"),
                 _fig(ev / "neighbours" / "tsne.png", "neighbour views: t-SNE of the test representations"))),
        ("S7", "S7 · Laplacian Eigenmaps", _notes(text["S7"])
         + _grid(_fig(ev / "eigenmaps" / "tsne.png", "Laplacian Eigenmaps: t-SNE of the test images' eigenvector "
                                                     "coordinates"),
                 _fig(ev / "vicreg" / "tsne.png", "VICReg: t-SNE of the test representations, for comparison"))),
        ("S8", "S8 · Retrieval: nearest and most distant training images", _notes(text.get("S8", [])) + "".join(
            _grid(*(_fig(ev / m / f"retrieval_{kind}.png", f"{METHODS[m]}: the {k} {word} training images of one "
                                                           "random training image per class") for m in pair))
            for kind, word in (("nearest", "nearest"), ("farthest", "most distant")))),
        ("A", "A1–A3 · Anomaly detection", _notes(text.get("A", []))
         + _grid(_fig(ev / "anomaly" / "roc.png", f"ROC curves: {cfg['recipe']['data']['dataset']} test (normal) vs "
                                                  f"{anomalies} test (anomalous), AUC in the legend"),
                 _fig(ev / "anomaly" / "top_anomalies.png", f"the {cfg['eval']['anomaly_top']} most anomalous test "
                                                            "images of each method, one row each"))),
        ("C", "C1–C3 · Clustering", _notes(text.get("C", [])) + "".join(
            _fig(ev / m / "clusters.png", f"{METHODS[m]}: t-SNE coloured by K-means cluster (left) and by class "
                                          "(right), cluster centres in black") for m in pair)),
        ("D", "§4 · Anomaly detection on sensor images: which detector to trust", _detection(study_dir, results)),
        ("SND", "§4 · Sound: machine sounds and spoken digits", _sound(study_dir, results)),
    ]


def write_report(study_dir: Path, results: dict[str, Any]) -> Path:
    """Render ``study_dir/report.html`` from ``results`` and the figures in ``study_dir``."""
    curves = {m: read_metrics(study_dir / "runs" / m / METRICS) for m in (*CURVE_RUNS, *LATENT_RUNS)
              if (study_dir / "runs" / m / METRICS).exists()}
    sections = _sections(study_dir, results, curves)
    cfg, v = results["config"], next(r for r in results["table"] if r["method"] == "vicreg")
    recipe, k = cfg["recipe"], cfg["eval"]["retrieval_k"]
    meta = json.loads((study_dir / "meta.json").read_text()) if (study_dir / "meta.json").exists() else {}
    anomalies = results["stages"]["anomaly"]["anomalies"]
    stage_rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{s:.1f} s</td></tr>"
                         for name, s in results["seconds"]["stages"].items())
    stage_rows += f"<tr><th>all stages</th><th>{results['seconds']['total']:.1f} s</th></tr>"
    data_rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{d['images']}</td><td><code>{d['hash']}</code></td></tr>"
                        for name, d in results["data"].items())
    cards = [(pct(v["linear_top1"]), "VICReg linear probe top-1"), (pct(v["knn_top1"]), "VICReg kNN top-1"),
             (f"{max(r['auroc'] for r in results['stages']['anomaly']['runs']):.3f}", f"best AUROC vs {anomalies}"),
             (f"{results['seconds']['total'] / 60:.1f} min", "computation in all")]
    subtitle = " ".join([
        f"viclab study, preset <code>{html.escape(results['preset'])}</code>, dataset",
        f"<code>{html.escape(recipe['data']['dataset'])}</code>, backbone",
        f"<code>{html.escape(recipe['model']['backbone'])}</code>, {recipe['train']['epochs']} training epoch(s),",
        f"batch {recipe['train']['batch_size']}; commit <code>{html.escape(str(meta.get('git_commit', 'unknown')))}",
        f"</code>, device <code>{html.escape(str(meta.get('device', '?')))}</code>",
        f"({html.escape(str(meta.get('device_name', '')))}).",
    ])
    nav = "".join(f'<a href="#{sid}">{sid}</a>' for sid, _, _ in sections)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>viclab study ({html.escape(results['preset'])} preset)</title><style>{CSS}</style></head>
<body><main>
<h1>VICReg, its ablations, and what the representations are good for</h1>
<p class="sub">{subtitle}</p>
<nav><a href="#results">results</a>{nav}<a href="#timing">timing</a></nav>
<div class="cards">{''.join(f'<div class="card"><b>{a}</b><span>{html.escape(b)}</span></div>' for a, b in cards)}</div>
<section id="results"><h2>Results</h2>
<p>Accuracies on the test split ({v['n_test']} images; latent codes: a held-out tenth of the training codes).
precision@k: share of the {k} nearest training images of the query's class. AUROC: kNN anomaly detection against
{html.escape(anomalies)}. Silhouette and ARI: K-means with k = {cfg['eval']['clusters']} on training representations.
Variance in 2 PCs and effective rank: spread of the test representations. — : not part of the study for that method.
Best value of a column in bold.</p>
{_table(results['table'])}</section>
{''.join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>' for sid, title, body in sections)}
<section id="timing"><h2>Timing and data</h2>
<table><tr><th>stage</th><th>time</th></tr>{stage_rows}</table>
<table><tr><th>split</th><th>images</th><th>content hash</th></tr>{data_rows}</table>
<p>Every number above is in <code>results.json</code> next to this file; the configuration in
<code>config.json</code>.</p>
</section></main></body></html>
"""
    return atomic_write_text(study_dir / REPORT, page)
