"""Short interpretations of a study, each claim computed from that study's numbers.

Nothing here is canned: every comparison word (higher, lower, within the sampling error) is chosen by the numbers it
describes, so the text cannot contradict the figures and tables next to it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from viclab.config.detect import TERM_SCORES, TERMS
from viclab.core.metrics import sampling_error  # the one home of accuracies' sampling error


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def compare_accuracy(name_a: str, a: float, n_a: int, name_b: str, b: float, n_b: int) -> str:
    """``"A (x%) is above B (y%) by z points, more than twice the sampling error"``."""
    d = a - b
    # Treats the two accuracies as independent binomial estimates: a rough, conservative guide.
    se = math.sqrt(sampling_error(a, n_a) ** 2 + sampling_error(b, n_b) ** 2)
    if d == 0:
        return f"{name_a} and {name_b} score the same ({pct(a)})"
    return (f"{name_a} ({pct(a)}) is {'above' if d > 0 else 'below'} {name_b} ({pct(b)}) by {abs(100 * d):.1f} points, "
            f"{'more than' if abs(d) > 2 * se else 'within'} twice the binomial standard error of the difference "
            f"({100 * se:.1f} points)")


def change(name: str, first: float, last: float) -> str:
    if last == first:
        return f"{name} stayed at {first:.3g}"
    return f"{name} {'fell' if last < first else 'rose'} from {first:.3g} to {last:.3g}"


def _vs(a: dict[str, Any], name_a: str, b: dict[str, Any], name_b: str) -> str:
    return compare_accuracy(name_a, a["linear_top1"], a["n_test"], name_b, b["linear_top1"], b["n_test"])


def interpret(results: dict[str, Any], curves: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Sentences per report section (``S1`` ... ``C``) from ``results`` and ``curves`` (method -> metrics records)."""
    rows = {r["method"]: r for r in results["table"]}
    chance = 1.0 / results["stages"]["eval_vicreg"]["n_classes"]
    out = {"S1": _curves(rows, curves), **_vicreg(results, rows, chance), **_ablations(results, rows, chance)}
    return out | _optional(results, rows, chance)


def _curves(rows: dict[str, dict[str, Any]], curves: dict[str, list[dict[str, Any]]]) -> list[str]:
    """S1: how each term moved over training (means of the first and last training batches), and on the test set."""
    s1 = []
    for method in [m for m in ("vicreg", "no_variance") if curves.get(m)]:
        recs, label = curves[method], rows[method]["name"]
        train = [r for r in recs if r["split"] == "train"]
        w = min(20, len(train) // 4 or 1)
        parts = [change(term, *(float(np.mean([r[term] for r in part])) for part in (train[:w], train[-w:])))
                 for term in TERMS]
        test = [r for r in recs if r["split"] == "test"]
        line = f"{label}, first to last {min(20, max(1, len(recs) // 4))} training batches: " + "; ".join(parts) + "."
        if len(test) >= 2:
            line += " On the test set (before training, then after each epoch): " + "; ".join(
                change(term, test[0][term], test[-1][term]) for term in TERMS) + "."
        s1.append(line)
    return s1


def _vicreg(results: dict[str, Any], rows: dict[str, dict[str, Any]], chance: float) -> dict[str, list[str]]:
    """S2-S4: VICReg's representation, its probe, and what the variance term changes."""
    v, nv = rows["vicreg"], rows["no_variance"]
    return {"S2": [
        f"The first two principal components carry {pct(v['pca2_share'])} of the variance of VICReg's "
        f"{v['dim']}-d test representations (effective rank {v['effective_rank']:.1f} of {v['dim']}), so the "
        f"PCA map shows {'most' if v['pca2_share'] >= 0.5 else 'less than half'} of their variance; t-SNE keeps "
        "neighbourhoods instead of variance."
    ], "S3": [
        f"Linear probe on VICReg's frozen representations: top-1 {pct(v['linear_top1'])}, top-5 "
        f"{pct(v['linear_top5'])} on {v['n_test']} test images ({v['n_train']} training images), against "
        f"{pct(chance)} for chance; the weighted {results['config']['eval']['knn_k']}-NN classifier scores "
        f"{pct(v['knn_top1'])} top-1."
    ], "S4": [
        "Linear probe: " + _vs(nv, "μ = 0", v, "VICReg") + ".",
        f"The first two principal components carry {pct(nv['pca2_share'])} of the μ = 0 test representations' "
        f"variance against {pct(v['pca2_share'])} with the variance term; effective rank "
        f"{nv['effective_rank']:.1f} against {v['effective_rank']:.1f} (of {v['dim']}): "
        + ("the representation is more concentrated along few directions without the variance term."
           if nv["effective_rank"] < v["effective_rank"] else
           "by this measure the representation is not more concentrated without the variance term."),
    ]}


def _ablations(results: dict[str, Any], rows: dict[str, dict[str, Any]], chance: float) -> dict[str, list[str]]:
    """S5-S7: latent optimisation, neighbour views and Laplacian Eigenmaps against VICReg."""
    st, v, ln = results["stages"], rows["vicreg"], rows["latent_naive"]
    naive, graph, eig = st["latent_naive"], st["latent_graph"], st["eigenmaps"]
    same = st["neighbours"].get("same_class")
    inv_text = ("exactly 0 in every one of its " if naive["max_abs_invariance"] == 0 else
                f"at most {naive['max_abs_invariance']:.3g} over its ")
    return {"S5": [
        f"With naive pairs the invariance term was {inv_text}{naive['batches']} batches, and a probe trained on "
        f"{ln['n_train']} codes scores {pct(ln['linear_top1'])} on the other {ln['n_test']} (chance {pct(chance)}).",
        f"Pairing each code with one of its {results['config']['latent']['graph_k']} "
        f"nearest images in a fixed feature space ({pct(graph.get('graph_same_class'))} of those neighbours share "
        f"the image's class): " + _vs(rows["latent_graph"], "the graph-pair codes", ln, "the naive codes") + ".",
    ], "S6": [
        (f"{pct(same)} of the {results['config']['neighbour_k']} nearest training neighbours in VICReg's space "
         "share the image's class. " if same is not None else "")
        + "After training on those pairs: " + _vs(rows["neighbours"], "the neighbour-view model", v, "VICReg") + "."
    ], "S7": [
        f"Laplacian Eigenmaps on all {eig['nodes']} images ({eig['edges']} edges, one component, "
        f"{rows['eigenmaps']['dim']} eigenvectors, {eig['seconds']['total']:.0f} s): "
        + _vs(rows["eigenmaps"], "its linear probe", v, "VICReg") + "."
    ]}


def _optional(results: dict[str, Any], rows: dict[str, dict[str, Any]], chance: float) -> dict[str, list[str]]:
    """S8 if both models were evaluated on retrieval, A if two methods scored the anomalies, C if both clustered."""
    st, v, nb, cfg = results["stages"], rows["vicreg"], rows["neighbours"], results["config"]["eval"]
    out = {}
    if v["precision_at_k"] is not None and nb["precision_at_k"] is not None:
        k = cfg["retrieval_k"]
        out["S8"] = [
            f"Precision@{k} (share of the {k} nearest training images of the query's class, averaged over "
            f"{st['eval_vicreg']['retrieve']['precision_queries']} queries): VICReg {pct(v['precision_at_k'])}, "
            f"neighbour views {pct(nb['precision_at_k'])} "
            f"({100 * (nb['precision_at_k'] - v['precision_at_k']):+.1f} points for neighbour views; "
            f"chance {pct(chance)})."
        ]
    if len(st["anomaly"]["runs"]) >= 2:
        out["A"] = _anomaly(st["anomaly"])
    if v["silhouette"] is not None and nb["silhouette"] is not None:
        better = ("VICReg's" if v["ari"] > nb["ari"] else "the neighbour-view model's" if nb["ari"] > v["ari"]
                  else "neither method's")
        out["C"] = [
            f"K-means (k = {cfg['clusters']}) silhouette, exact over all training points: "
            f"VICReg {v['silhouette']:.3f}, neighbour views {nb['silhouette']:.3f}. Agreement of the clusters "
            f"with the classes (adjusted Rand index): VICReg {v['ari']:.3f}, neighbour views {nb['ari']:.3f}; "
            f"{better} clusters match the classes better by this measure."
        ]
    return out


def _anomaly(an: dict[str, Any]) -> list[str]:
    """A: the better of the two methods' AUROCs, and how many of each's most anomalous images are anomalies."""
    a, b = sorted(an["runs"], key=lambda r: -r["auroc"])[:2]
    return [
        f"{a['name']} separates {an['anomalies']} from the normal test images better: AUROC "
        f"{a['auroc']:.3f} against {b['auroc']:.3f} for {b['name']} ({a['auroc'] - b['auroc']:+.3f})."
        if a["auroc"] > b["auroc"] else f"Both methods reach AUROC {a['auroc']:.3f}.",
        "Among the most anomalous test images: " + "; ".join(
            f"{r['name']}: {sum(t['dataset'] == an['anomalies'] for t in r['top'])} of "
            f"{len(r['top'])} are {an['anomalies']}" for r in an["runs"]) + ".",
    ]


# Published one-class CIFAR-10 mean AUROCs (spec §5; ResNet-18 from scratch, hundreds of GPU epochs).
ONE_CLASS_ANCHORS = {"SimCLR features": 0.879, "rotation+translation": 0.900, "CSI": 0.943}


def interpret_detection(det: dict[str, Any]) -> list[str]:
    """Sentences on the study's one-class detection part (spec §4), from its numbers."""
    mean, shown, rec = det["mean_auroc"], det["figure_detectors"], det["recipe"]
    ranked = sorted(shown, key=lambda n: -mean[n])
    best, floor = ranked[0], next((n for n in shown if "random" in n), None)
    shift = f"; the shift detector's rotation network {rec['epochs']} epoch(s)" if "shift" in mean else ""
    out = [
        f"Mean AUROC over the one-class problems of class{'es' if len(det['classes']) > 1 else ''} "
        f"{', '.join(det['classes'])} "
        f"(each detector fitted on that class's training images only, VICReg {rec['epochs']} epoch(s), "
        f"{rec['views']} views per image{shift}): " + ", ".join(f"{n} {mean[n]:.3f}" for n in ranked) + "."
    ]
    if floor is not None and floor != best:
        out.append(f"The best, {best}, is {mean[best] - mean[floor]:+.3f} from the random-encoder floor "
                   f"({mean[floor]:.3f}).")
    elif floor is not None:
        out.append(f"No trained detector beats the random-encoder floor ({mean[floor]:.3f}) at this budget.")
    out += _vicreg_quantities(mean)
    gap = ONE_CLASS_ANCHORS["SimCLR features"] - mean[best]
    out.append("Published means of the full protocol (all ten classes, ResNet-18, hundreds of GPU epochs): "
               + ", ".join(f"{k} {v:.3f}" for k, v in ONE_CLASS_ANCHORS.items())
               + f"; this budget's best mean, {mean[best]:.3f}, is {abs(gap):.3f} {'below' if gap > 0 else 'above'} "
               "SimCLR's (a subset of classes: compare with care; the full table is benchmarks/detection.py).")
    out += _monitor(det)
    out.append(f"Each class took {np.median([r['seconds'] for r in det['per_class']]):.0f} s (median) to fit every "
               "detector and score the test set.")
    return out


def _vicreg_quantities(mean: dict[str, float]) -> list[str]:
    """Which of VICReg's per-image quantities ranks anomalies best (none when none was scored)."""
    terms = {q: mean[f"vicreg_terms:{q}"] for q in TERM_SCORES if f"vicreg_terms:{q}" in mean}
    if not terms:
        return []
    q = max(terms, key=terms.get)
    return [f"Of VICReg's per-image quantities, {q} ranks best (mean AUROC {terms[q]:.3f}; "
            + ", ".join(f"{k} {v:.3f}" for k, v in terms.items() if k != q) + "). An AUROC below 0.5 "
            "means the quantity is smaller on anomalies than on normal images."]


def _monitor(det: dict[str, Any]) -> list[str]:
    """The monitor's mean terms on anomalous against normal batches, and the term that moves most."""
    mon = det["monitor"]["mean"] if det.get("monitor") else {}
    ratio = {k: v["anomalous"] / v["normal"] for k, v in mon.items() if v["normal"]}
    if not ratio:
        return []
    k = max(ratio, key=lambda t: abs(np.log(ratio[t])) if ratio[t] > 0 else 0.0)
    return [f"Monitor (class {det['first_class']}, batches of {det['monitor']['batch_size']}): mean per batch, "
            "anomalous vs normal batches: " + "; ".join(
                f"{t} {v['anomalous']:.4g} vs {v['normal']:.4g}" for t, v in mon.items())
            + f". The {k} term moves most ({ratio[k]:.2f}x its normal level)."]


DCASE_BASELINE_AUC = {"fan": 0.65, "slider": 0.85}  # published development-set AUC (~1,000 normal clips per ID)


def interpret_sound(machines: dict[str, Any] | None, fsdd: dict[str, Any] | None) -> list[str]:
    """Sentences on the study's sound part (spec §4), from its numbers."""
    out = []
    if machines:
        for machine, r in machines["machines"].items():
            mean = r["mean_id_auroc"]
            ranked = sorted(mean, key=lambda n: -mean[n])
            best = ranked[0]
            low, high = r["all"][best]["auroc_interval"]
            out.append(
                f"{machine}: mean AUC over its {len(r['ids'])} machine ID(s) (one model per detector for the type, "
                f"{r['test']['normal']} normal and {r['test']['anomalous']} abnormal test clips): "
                + ", ".join(f"{n} {mean[n]:.3f}" for n in ranked) + f". The best, {best}, has a 95% bootstrap "
                f"interval of [{low:.2f}, {high:.2f}] over all its test clips: with this few clips, detectors "
                "closer than that interval's width are not told apart.")
            anchor = DCASE_BASELINE_AUC.get(machine)
            if anchor is not None and "dcase_ae" in mean:
                d = mean["dcase_ae"] - anchor
                out.append(f"The DCASE 2020 baseline re-implemented here ({machines['recipe']['dcase_epochs']} "
                           f"epochs on the fitting clips) reaches {mean['dcase_ae']:.3f} on {machine}, {abs(d):.3f} "
                           f"{'above' if d > 0 else 'below'} its published {anchor:.2f}, which it reached on about "
                           "1,000 normal clips per ID; compare the ranking of detectors on the same clips, not the "
                           "levels.")
        p, a = (machines["resynth"][k]["vs_original"] for k in ("plain", "autoencoder"))
        out.append(f"Griffin-Lim from the log-mel spectrogram of an abnormal {machines['first_machine']} clip: "
                   f"spectral convergence {p['spectral_convergence']:.3f}, log-spectral distance "
                   f"{p['log_spectral_distance_db']:.1f} dB against the original; from the autoencoder's "
                   f"reconstruction {a['spectral_convergence']:.3f} and {a['log_spectral_distance_db']:.1f} dB "
                   f"({'farther from' if a['spectral_convergence'] > p['spectral_convergence'] else 'as close to'} "
                   "the original: what the autoencoder does not reproduce is what its score measures).")
    if fsdd:
        pr = fsdd["probe"]
        v, r = pr["vicreg"], pr["random"]
        verdict = compare_accuracy("VICReg", v["top1"], pr["test_clips"], "a random-init encoder", r["top1"],
                                   pr["test_clips"])
        out.append(f"Spoken digits (FSDD), speakers {', '.join(pr['held_out_speakers'])} held out of training: "
                   f"VICReg on the other speakers' {pr['train_clips']} clips ({fsdd['epochs']} epochs, "
                   f"{pr['train_seconds']:.0f} s), linear probe top-1 {pct(v['top1'])} (top-5 {pct(v['top5'])}) on "
                   f"the {pr['test_clips']} held-out clips; {verdict}.")
    return out
