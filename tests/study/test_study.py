"""viclab study: every stage, the cache, a killed study resumed, the numbers it reports."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.study.conftest import TINY
from viclab.config import STUDY_PRESETS, resolve
from viclab.core.context import QUIET, Context
from viclab.study import run_study
from viclab.study.pipeline import METHODS

STAGES = ["vicreg", "no_variance", "neighbours", "latent_naive", "latent_graph", "eigenmaps",
          *(f"eval_{m}" for m in METHODS), "anomaly", "detect", "sound_machines", "sound_fsdd"]


def _data_dir(results: dict) -> str:
    """The override that studies a copy on the data folder of the tiny study."""
    return f"data.data_dir={results['config']['recipe']['data']['data_dir']}"


def numbers(tree, path=""):
    """Every number and string leaf of a results tree, except timings, file paths and file hashes
    (a neighbour run's weights file records the path of its source run in its metadata)."""
    if not path:
        tree = json.loads(json.dumps(tree, default=str))
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if "seconds" in k or k in ("files", "scores", "data_dir", "source", "weights_sha256"):
                continue
            out.update(numbers(v, f"{path}/{k}"))
        return out
    if isinstance(tree, list):
        out = {}
        for i, v in enumerate(tree):
            out.update(numbers(v, f"{path}/{i}"))
        return out
    return {path: tree}


def without_sound(flat: dict) -> dict:
    """:func:`numbers` of a study without its sound part (stages, config fields and data)."""
    return {k: v for k, v in flat.items() if not any(w in k for w in ("/sound", "mimii", "fsdd"))}


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_presets_and_overrides(tmp_path):
    cpu, ex = STUDY_PRESETS["cpu"], STUDY_PRESETS["exercise"]
    # exercise follows spec §2: ResNet-18 variant, Adam 3e-4, batch 256, 30 epochs; all of S5-S7 at full size
    assert ex.recipe.model.backbone == "exercise_resnet18" and ex.recipe.train.epochs == 30
    assert (ex.recipe.optim.lr, ex.recipe.train.batch_size, ex.recipe.loss.var_weight) == (3e-4, 256, 25.0)
    assert ex.neighbour_k == 3 and ex.neighbour_epochs == 1 and ex.latent.epochs == 30
    assert cpu.recipe.model.backbone == "small_cnn_pf" and cpu.recipe.augment.local_crops == 2
    s = resolve("study", "cpu", overrides=["train.epochs=2", "latent.graph_k=5", "eval.knn_k=7",
                                           "study.neighbour_epochs=2", f"data.data_dir={tmp_path}"])
    assert s.recipe.train.epochs == 2 and s.latent.graph_k == 5 and s.eval.knn_k == 7 and s.neighbour_epochs == 2
    # one data folder for every stage
    assert s.recipe.data.data_dir == s.latent.data_dir == s.eigenmaps.data_dir == str(tmp_path)


def test_results_and_figures(tiny_study):
    out, results = tiny_study
    assert list(results["stages"]) == STAGES
    assert json.loads((out / "results.json").read_text())["stages"] == results["stages"]
    st = results["stages"]
    # S1: per-batch train terms and per-epoch test terms (epoch 0 = before training)
    recs = [json.loads(line) for line in (out / "runs/vicreg/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs if r["split"] == "test"] == [0, 1, 2, 3]
    assert len([r for r in recs if r["split"] == "train"]) == 3 * (100 // 12)
    # S4: the mu = 0 run really trained without the variance term
    cfg = json.loads((out / "runs/no_variance/config.json").read_text())
    assert cfg["loss"]["var_weight"] == 0.0 and cfg["loss"]["inv_weight"] == 25.0
    # S5: naive pairs -> invariance identically zero in every batch
    assert st["latent_naive"]["max_abs_invariance"] == 0.0 and st["latent_naive"]["batches"] == 100 // 20
    # S6: one epoch, neighbours from the study's own VICReg encoder
    nb = json.loads((out / "runs/neighbours/config.json").read_text())
    assert nb["views"]["kind"] == "neighbours" and nb["train"]["epochs"] == 1
    assert Path(nb["views"]["source"]) == (out / "runs/vicreg").resolve()
    # S4 on a budget: mu = 0 trains on the first 60 training images, evaluated on all 100; S6 on all of them
    assert cfg["data"]["subset"] == 60 and nb["data"]["subset"] == 0
    assert np.load(out / "runs/neighbours/neighbours.npy").shape == (100, 3)
    assert len([r for r in _records(out / "runs/no_variance") if r["split"] == "train"]) == 3 * (60 // 12)
    assert not [r for r in _records(out / "runs/neighbours") if r["split"] == "test"]  # no test terms: not drawn
    for m in ("no_variance", "neighbours"):
        assert json.loads((out / f"eval/{m}/probe.json").read_text())["n_train"] == 100
    # A1-A2: the reported AUROC is sklearn's on the saved scores (normal test = 0, MNIST test = 1)
    from sklearn.metrics import roc_auc_score

    for run in st["anomaly"]["runs"]:
        scores = np.load(out / "eval/anomaly" / Path(run["scores"]).name)
        truth = np.r_[np.zeros(run["n_normal"]), np.ones(run["n_anomalies"])]
        assert run["auroc"] == pytest.approx(roc_auc_score(truth, scores))
    # the table carries the evaluations' numbers
    rows = {r["method"]: r for r in results["table"]}
    assert set(rows) == set(METHODS)
    probe = json.loads((out / "eval/vicreg/probe.json").read_text())
    assert rows["vicreg"]["linear_top1"] == probe["linear"]["top1"]
    assert rows["latent_naive"]["n_train"] == 90 and rows["latent_naive"]["n_test"] == 10  # 90/10 of the codes
    # representation spread: independent numpy PCA of the stored test representations
    from viclab.represent.encode import load_source, representations

    os.environ.setdefault("VICLAB_CACHE", str(out.parent / "cache"))
    x = representations(load_source(out / "runs/no_variance"), "test").features.astype(np.float64)
    ev = np.sort(np.linalg.eigvalsh(np.cov(x.T)))[::-1]
    assert rows["no_variance"]["pca2_share"] == pytest.approx(ev[:2].sum() / ev.sum(), rel=1e-4)
    for f in ["figures/invariance.png", "figures/variance.png", "figures/covariance.png",
              "figures/latent_invariance.png", "figures/latent_variance.png", "eval/vicreg/pca.png",
              "eval/vicreg/tsne.png", "eval/no_variance/pca.png", "eval/eigenmaps/tsne.png",
              "eval/vicreg/retrieval_nearest.png", "eval/neighbours/retrieval_farthest.png", "eval/anomaly/roc.png",
              "eval/anomaly/top_anomalies.png", "eval/vicreg/clusters.png", "eval/neighbours/clusters.png"]:
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f


def test_detection_part(tiny_study):
    """§4: one-class problems for the chosen classes, numbers that match the saved detectors' scores."""
    from sklearn.metrics import roc_auc_score

    from viclab.detect import load_detector, load_test

    out, results = tiny_study
    det = results["stages"]["detect"]
    assert det["classes"] == ["0", "5"] and [r["class"] for r in det["per_class"]] == ["0", "5"]
    names = {"vicreg_terms:invariance", "vicreg_terms:variance", "vicreg_terms:covariance", "vicreg_terms:loss", "knn",
             "mahalanobis", "autoencoder", "shift", "shift:mahalanobis", "shift:rotation", "random-encoder knn"}
    assert set(det["mean_auroc"]) == names
    for n in names:
        assert det["mean_auroc"][n] == pytest.approx(np.mean([r["metrics"][n]["auroc"] for r in det["per_class"]]))
    # the table's AUROC is sklearn's on what the saved detector scores now (class 5: only class 5 normal)
    folder = out / "detect/detectors/class-5/mahalanobis"
    d, _ = load_detector(folder)
    test = load_test(d.cfg.data)
    assert set(np.flatnonzero(test.labels == 0)) == set(np.flatnonzero(test.origin == "cifar10:dog"))
    assert det["per_class"][1]["metrics"]["mahalanobis"]["auroc"] == pytest.approx(
        roc_auc_score(test.labels, d.score(test.data.images)["score"]))
    cfg = json.loads((out / "detect/detectors/class-0/vicreg_terms/train/config.json").read_text())
    assert cfg["train"]["epochs"] == 1 and cfg["model"]["projector"] == "32-32"  # the study's recipe, detect_epochs
    # the shift detector's network: the rotation recipe's views and objective on the study's budget
    shift = json.loads((out / "detect/detectors/class-0/shift/train/config.json").read_text())
    assert shift["train"]["objective"] == "rotation" and shift["augment"]["jitter_p"] == 0.0
    assert shift["train"]["epochs"] == 1 and shift["train"]["batch_size"] == 12
    d, _ = load_detector(out / "detect/detectors/class-5/shift")
    assert det["per_class"][1]["metrics"]["shift"]["auroc"] == pytest.approx(
        roc_auc_score(test.labels, d.score(test.data.images)["score"]))
    # knn, mahalanobis and the floor read every stage pooled
    assert {load_detector(out / f"detect/detectors/class-5/{n}")[0].cfg.layers
            for n in ("knn", "mahalanobis", "random-encoder_knn")} == {"all"}
    for f in ("detect/roc_pr.png", "detect/top_anomalies.png", "detect/monitor/monitor.png"):
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
    html = (out / "report.html").read_text()
    assert "which detector to trust" in html and f"{det['mean_auroc']['knn']:.3f}" in html


def test_sound_part(tiny_study):
    """§4 sound: every detector per machine type with per-ID numbers that match the saved detectors' scores,
    the FSDD probe, resynthesised audio in the page."""
    import base64
    import re

    from sklearn.metrics import roc_auc_score

    from viclab.detect import load_detector, load_test

    out, results = tiny_study
    m = results["stages"]["sound_machines"]
    assert list(m["machines"]) == ["fan", "slider"]
    fan = m["machines"]["fan"]
    assert fan["ids"] == ["id_00", "id_02", "id_04", "id_06"] and fan["test"] == {"normal": 20, "anomalous": 12}
    assert {"vicreg_terms:invariance", "knn", "mahalanobis", "autoencoder", "dcase_ae", "machine_id",
            "random-encoder knn"} <= set(fan["per_id"])
    d, _ = load_detector(out / "sound/machines/detectors/fan/dcase_ae")
    test = load_test(d.cfg.data, sound=d.cfg.recipe.sound)
    scores = d.score(test.data.images)["score"]
    ids = np.array(["id_02" in o for o in test.origin])
    assert fan["per_id"]["dcase_ae"]["id_02"]["auroc"] == pytest.approx(roc_auc_score(test.labels[ids], scores[ids]))
    low, high = fan["all"]["knn"]["auroc_interval"]
    assert low <= fan["all"]["knn"]["auroc"] <= high
    f = results["stages"]["sound_fsdd"]
    assert f["probe"]["held_out_speakers"] == ["theo", "yweweler"]
    assert f["probe"]["train_clips"] == 4 * 10 * 4 and f["probe"]["test_clips"] == 2 * 10 * 4
    for name in ("sound/machines/roc_fan.png", "sound/machines/spectrograms.png", "sound/fsdd/spectrograms.png",
                 "sound/machines/resynth_autoencoder/spectrograms.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    html = (out / "report.html").read_text()
    players = re.findall(r'<audio controls preload="none" src="data:audio/wav;base64,([^"]+)"', html)
    assert len(players) == 5 and all(base64.b64decode(p)[:4] == b"RIFF" for p in players)
    assert f"{fan['mean_id_auroc']['dcase_ae']:.3f}" in html


def test_sound_interpretation_follows_the_numbers(tiny_study):
    from viclab.report.interpret import interpret_sound

    st = json.loads(json.dumps(tiny_study[1]["stages"]))
    fan = st["sound_machines"]["machines"]["fan"]
    fan["mean_id_auroc"].update({k: 0.5 for k in fan["mean_id_auroc"]})
    fan["mean_id_auroc"].update({"mahalanobis": 0.9, "dcase_ae": 0.7})
    fan["all"]["mahalanobis"]["auroc_interval"] = [0.61, 0.99]
    text = " ".join(interpret_sound(st["sound_machines"], st["sound_fsdd"]))
    assert "mahalanobis 0.900, dcase_ae 0.700" in text and "interval of [0.61, 0.99]" in text
    assert "reaches 0.700 on fan, 0.050 above its published 0.65" in text
    probe = st["sound_fsdd"]["probe"]
    probe["vicreg"]["top1"], probe["random"]["top1"] = 0.9, 0.3
    text = " ".join(interpret_sound(None, st["sound_fsdd"]))
    assert "VICReg (90.0%) is above a random-init encoder (30.0%) by 60.0 points, more than twice" in text


def test_detection_interpretation_follows_the_numbers(tiny_study):
    from viclab.report.interpret import interpret_detection

    det = json.loads(json.dumps(tiny_study[1]["stages"]["detect"]))
    det["mean_auroc"].update({"mahalanobis": 0.81, "random-encoder knn": 0.6, "knn": 0.7, "autoencoder": 0.5,
                              "vicreg_terms:invariance": 0.55, "vicreg_terms:covariance": 0.65})
    det["figure_detectors"] = ["vicreg_terms:invariance", "knn", "mahalanobis", "autoencoder", "random-encoder knn"]
    text = " ".join(interpret_detection(det))
    assert "mahalanobis 0.810, knn 0.700, random-encoder knn 0.600, vicreg_terms:invariance 0.550" in text
    assert "The best, mahalanobis, is +0.210 from the random-encoder floor (0.600)" in text
    assert "is 0.069 below SimCLR's" in text
    det["mean_auroc"]["random-encoder knn"] = 0.9
    assert "No trained detector beats the random-encoder floor (0.900)" in " ".join(interpret_detection(det))


def test_interpretations_follow_the_numbers(tiny_study):
    from viclab.report.interpret import interpret

    _, results = tiny_study
    r = json.loads(json.dumps(results))
    rows = {row["method"]: row for row in r["table"]}
    rows["vicreg"]["linear_top1"], rows["no_variance"]["linear_top1"] = 0.60, 0.20
    text = " ".join(interpret(r, {})["S4"])
    assert "μ = 0 (20.0%) is below VICReg (60.0%) by 40.0 points, more than twice" in text
    rows["no_variance"]["linear_top1"] = 0.61
    assert "is above VICReg (60.0%) by 1.0 points, within twice" in " ".join(interpret(r, {})["S4"])
    runs = r["stages"]["anomaly"]["runs"]
    runs[0]["auroc"], runs[1]["auroc"] = 0.80, 0.95
    assert f"{runs[1]['name']} separates mnist" in interpret(r, {})["A"][0] and "(+0.150)" in interpret(r, {})["A"][0]


def test_finished_stages_are_not_recomputed(tiny_study, tmp_path, monkeypatch):
    import shutil

    out, results = tiny_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setenv("VICLAB_CACHE", str(tmp_path / "empty-cache"))

    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    for target in ("viclab.study.pipeline.train", "viclab.study.pipeline.run_latent",
                   "viclab.study.pipeline.run_eigenmaps", "viclab.eval.tasks.run_probe",
                   "viclab.study.pipeline.run_anomaly"):
        monkeypatch.setattr(target, boom)
    lines: list[str] = []
    cfg = resolve("study", "cpu", overrides=[*TINY, _data_dir(results)])
    again = run_study(cfg, copy, ctx=Context(progress=False, echo=lines.append))
    assert numbers(again) == numbers(results)
    assert sum("cached" in s for s in lines) == len(STAGES)
    # changed inputs: only the stages that depend on them run again
    monkeypatch.undo()
    monkeypatch.setenv("VICLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("viclab.study.pipeline.train", boom)
    lines.clear()
    run_study(resolve("study", "cpu", overrides=[*TINY, "eval.anomaly_k=3",
                                                 f"data.data_dir={cfg.recipe.data.data_dir}"]),
              copy, ctx=Context(progress=False, echo=lines.append))
    ran = [s for s in lines if "done in" in s]
    assert len(ran) == len(METHODS) + 1 and all("evaluate" in s or "anomaly" in s for s in ran)


def test_killed_study_resumes_to_the_same_results(tiny_study, study_data, tmp_path):
    """SIGKILL in the middle of the VICReg training stage, then run the same command again."""
    out, results = tiny_study
    study = tmp_path / "killed"
    env = {**os.environ, "VICLAB_CACHE": str(tmp_path / "cache")}
    # the sound part (its own stages, none collective) is left out here: test_sound_part covers it
    cmd = [sys.executable, "-m", "viclab", "study", "--out", str(study), "--data-dir", str(study_data),
           "--no-progress", *TINY, "study.sound=false"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt, state = study / "runs/vicreg/checkpoint.pt", study / "stages/vicreg.json"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), proc.stderr.read().decode()[-2000:]
    killed = json.loads(state.read_text())
    assert killed["status"] == "running"  # killed mid-stage: epoch 1 of 3 saved, the rest lost
    assert not (study / "runs/vicreg/encoder.safetensors").exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = json.loads((study / "results.json").read_text())
    assert without_sound(numbers(resumed)) == without_sound(numbers(results))
    # and the trained weights are bit-identical to the uninterrupted study's
    from safetensors.numpy import load_file

    for run in ("vicreg", "no_variance", "neighbours"):
        a, b = load_file(out / f"runs/{run}/encoder.safetensors"), load_file(study / f"runs/{run}/encoder.safetensors")
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), run
    # the resumed run continued from its checkpoint: provenance records the second session
    meta = json.loads((study / "runs/vicreg/meta.json").read_text())
    assert len(meta.get("resumes", [])) == 1


CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const out = {images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
               sections: [...document.querySelectorAll("section")].map(s => s.id),
               audio: [...document.querySelectorAll("audio")].map(a => a.src.startsWith("data:audio/wav;base64,")),
               title: document.title};
  const pre = document.createElement("pre"); pre.id = "viclab-check"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless Chromium here (Debian: apt-get install chromium)")


def test_report_renders_in_chromium(tiny_study, tmp_path):
    out, _ = tiny_study
    html = (out / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # opens offline
    n_img = html.count("<img ")
    assert n_img >= 22 and html.count('src="data:image/png;base64,') == n_img
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", CHECK + "</body>"))
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert 'id="viclab-check"' in dom, proc.stderr[-2000:]
    check = json.loads(dom.split('id="viclab-check">')[1].split("</pre>")[0].replace("&quot;", '"'))
    assert check["images"] == n_img and check["broken"] == 0
    sections = ["results", "S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "A", "C", "D", "SND", "timing"]
    assert check["sections"] == sections
    n_audio = html.count("<audio ")
    assert n_audio >= 2 and check["audio"] == [True] * n_audio
    # Each player's embedded WAV decodes (libsndfile; Chromium's media pipeline loads asynchronously,
    # outside headless mode's virtual time, so waiting for it there was flaky).
    import base64
    import io

    import soundfile

    for payload in re.findall(r'<audio [^>]*src="data:audio/wav;base64,([^"]+)"', html):
        clip, rate = soundfile.read(io.BytesIO(base64.b64decode(payload)))
        assert rate > 0 and len(clip) > 0 and np.isfinite(clip).all()
    assert "viclab study" in check["title"]


class _Ran(Exception):
    """Raised by a stand-in for a stage's work: the stage was not taken from the cache."""


def _copy(tiny_study, tmp_path, monkeypatch):
    import shutil

    out, results = tiny_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setenv("VICLAB_CACHE", str(tmp_path / "cache"))
    return copy, results


def test_an_upgraded_viclab_recomputes_instead_of_reusing_stages(tiny_study, tmp_path, monkeypatch):
    import viclab

    copy, results = _copy(tiny_study, tmp_path, monkeypatch)

    def ran(*a, **k):
        raise _Ran

    monkeypatch.setattr("viclab.study.pipeline.train", ran)
    monkeypatch.setattr(viclab, "__version__", "999.0")
    with pytest.raises(_Ran):
        run_study(resolve("study", "cpu", overrides=[*TINY, _data_dir(results)]), copy,
                  ctx=QUIET)


def _as_bf16_cpu(monkeypatch) -> None:
    """This CPU as one with native bf16 (AMX): ``auto`` precision then resolves to bf16 on it."""
    monkeypatch.setattr("viclab.core.runtime.cpu_bf16", lambda: "AMX")


def _as_cuda_machine(monkeypatch) -> None:
    """This machine as one with an Ampere-class GPU: ``auto`` resolves to CUDA, bf16 for training."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))


def test_a_study_moved_to_a_machine_with_another_precision_recomputes(tiny_study, tmp_path, monkeypatch):
    """The tiny study ran at train.precision=auto on this CPU; the same folder on a CPU where auto
    means bf16 must train again instead of reporting the other machine's numbers."""
    from viclab.core.runtime import select_runtime

    copy, results = _copy(tiny_study, tmp_path, monkeypatch)
    before = select_runtime("auto", "auto").precision
    _as_bf16_cpu(monkeypatch)
    assert before == "fp32" and select_runtime("auto", "auto").precision == "bf16"  # the runtime did change

    def ran(*a, **k):
        raise _Ran

    monkeypatch.setattr("viclab.study.pipeline.train", ran)
    with pytest.raises(_Ran):
        run_study(resolve("study", "cpu", overrides=[*TINY, _data_dir(results)]), copy,
                  ctx=QUIET)


def _stage_fingerprints(cfg, data: dict, study_dir: Path) -> dict[str, str]:
    from viclab.study.pipeline import build_stages
    from viclab.study.stages import fingerprint

    return {s.name: fingerprint(s.inputs) for s in build_stages(cfg, study_dir, QUIET, data)}


@pytest.mark.parametrize("move", [_as_bf16_cpu, _as_cuda_machine], ids=["bf16-cpu", "cuda"])
def test_every_stage_whose_numbers_the_runtime_changes_has_it_in_its_inputs(study_data, tmp_path, monkeypatch,
                                                                             move):
    from viclab.study.pipeline import data_fingerprints

    if move is _as_bf16_cpu:
        monkeypatch.setattr("viclab.core.runtime.cpu_bf16", lambda: "")  # this CPU: fp32 whatever it is
    cfg = resolve("study", "cpu", overrides=[*TINY, f"data.data_dir={study_data}"])
    data = data_fingerprints(cfg)
    here = _stage_fingerprints(cfg, data, tmp_path)
    assert _stage_fingerprints(cfg, data, tmp_path) == here  # the same machine: every finished stage is kept
    move(monkeypatch)
    there = _stage_fingerprints(cfg, data, tmp_path)
    changed = {name for name in here if here[name] != there[name]}
    # The trainings and the detectors train and score at precision auto (bf16 on either machine);
    # evaluations encode in fp32, on the CPU or on the GPU; the latent optimisation always runs on the
    # CPU in fp32 and Laplacian Eigenmaps in NumPy, so those keep their results.
    computing = {"vicreg", "no_variance", "neighbours", "detect", "sound_machines", "sound_fsdd"}
    encoding = {f"eval_{m}" for m in METHODS} | {"anomaly"}
    assert changed == (computing if move is _as_bf16_cpu else computing | encoding)


def test_code_fingerprint_follows_what_a_stage_imports(tmp_path):
    from viclab.study.stages import code_fingerprint, code_modules

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "entry.py").write_text("import pkg.helper\n\n\ndef f():\n    from pkg.sub import deep\n"
                                  "    from . import rel\n")
    (pkg / "helper.py").write_text("X = 1\n")
    (pkg / "sub" / "deep.py").write_text("from ..helper import X\n")
    (pkg / "rel.py").write_text("Y = 2\n")
    (pkg / "unrelated.py").write_text("Z = 3\n")

    def fp() -> str:
        return code_fingerprint(["pkg.entry"], package="pkg", root=pkg)

    assert set(code_modules(["pkg.entry"], package="pkg", root=pkg)) == {
        "pkg", "pkg.entry", "pkg.helper", "pkg.sub", "pkg.sub.deep", "pkg.rel"}
    before = fp()
    (pkg / "unrelated.py").write_text("Z = 4\n")
    assert fp() == before
    (pkg / "sub" / "deep.py").write_text("from ..helper import X  # edited\n")  # imported inside a function
    assert fp() != before


def test_changing_only_the_anomalies_reruns_only_the_anomaly_stage(tiny_study, tmp_path, monkeypatch):
    from PIL import Image

    copy, results = _copy(tiny_study, tmp_path, monkeypatch)
    odd = tmp_path / "odd-images"
    odd.mkdir()
    for i in range(6):
        Image.new("RGB", (32, 32), (40 * i, 255 - 40 * i, 0)).save(odd / f"{i}.png")

    def ran(*a, **k):
        raise _Ran

    for target in ("viclab.study.pipeline.train", "viclab.study.pipeline.run_latent",
                   "viclab.study.pipeline.run_eigenmaps", "viclab.eval.tasks.run_probe"):
        monkeypatch.setattr(target, ran)
    lines: list[str] = []
    run_study(resolve("study", "cpu", overrides=[*TINY, f"study.anomalies={odd}", _data_dir(results)]),
              copy, ctx=Context(progress=False, echo=lines.append))
    ran_stages = [s for s in lines if "done in" in s]
    assert len(ran_stages) == 1 and "anomaly detection" in ran_stages[0], lines


def test_the_training_dataset_as_anomalies_is_refused_before_any_work(tmp_path):
    from viclab.core.errors import ViclabError

    with pytest.raises(ViclabError, match="study.anomalies=cifar10 is the dataset the study trains on"):
        resolve("study", "cpu", overrides=[*TINY, "study.anomalies=cifar10", f"data.data_dir={tmp_path}"])


def test_stage_time_counts_the_work_done_before_a_sigkill(tmp_path):
    from viclab.study.stages import Stage, fingerprint, run_stages

    stage = Stage("s", "a stage", {"x": 1}, lambda folder: {"ok": True}, "work")
    fp = fingerprint({"stage": "s", "inputs": {"x": 1}, "upstream": {}})
    now = time.time()
    # A first attempt started 100 s ago with 5 s from earlier attempts, wrote its last file 40 s
    # ago, then was SIGKILLed (so it never recorded its own time).
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "s.json").write_text(json.dumps(
        {"stage": "s", "fingerprint": fp, "status": "running", "inputs": {"x": 1}, "seconds": 5.0,
         "started_at": now - 100, "result": None}))
    (tmp_path / "work").mkdir()
    last = tmp_path / "work" / "checkpoint.pt"
    last.write_bytes(b"x")
    os.utime(last, (now - 40, now - 40))
    record = run_stages(tmp_path, [stage], ctx=QUIET)["s"]
    assert record.result == {"ok": True} and not record.cached
    assert 65 <= record.seconds < 70  # 5 earlier + the 60 s up to the last write + this (instant) run


def test_study_under_torchrun_trains_data_parallel(study_data, tmp_path):
    """Two gloo processes: the trainings run on both (world size 2 in their meta.json), the rest on
    rank 0, and the study finishes with its report."""
    torchrun = Path(sys.executable).parent / "torchrun"
    tiny = [o.replace("train.batch_size=20", "train.batch_size=10") for o in TINY]  # per process
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", VICLAB_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "viclab", "study", "--out",
                          str(tmp_path / "s"), "--data-dir", str(study_data), "--no-progress", "model.sync_bn=true",
                          *tiny, "study.sound=false"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    worlds = {m: json.loads((tmp_path / "s" / "runs" / m / "meta.json").read_text())["world_size"] for m in METHODS}
    assert worlds == {"vicreg": 2, "no_variance": 2, "neighbours": 2, "latent_naive": 1, "latent_graph": 1,
                      "eigenmaps": 1}
    assert (tmp_path / "s" / "report.html").exists()
    assert json.loads((tmp_path / "s" / "results.json").read_text())["table"][0]["method"] == "vicreg"


def test_progress_lines_estimate_the_remaining_time_at_the_measured_speed(tmp_path, monkeypatch):
    from viclab.study import stages as st

    clock = [0.0]
    monkeypatch.setattr(st.time, "perf_counter", lambda: clock[0])

    def work(seconds):
        def run(folder):
            clock[0] += seconds
            return {}
        return run

    # Estimates 100, 200, 300 s; the first stage takes 50 s: this machine is twice as fast as the reference,
    # so 250 s remain after it, 150 s after the second (which also took half its estimate); under 90 s in seconds.
    stages = [st.Stage(f"s{i}", f"stage {i}", {"i": i}, work(e / 2), f"w{i}", estimate=e)
              for i, e in enumerate((100.0, 200.0, 300.0))]
    lines: list[str] = []
    st.run_stages(tmp_path, stages, ctx=Context(progress=False, echo=lines.append))
    starts = [line for line in lines if "done in" not in line]
    assert starts == ["[1/3] stage 0 (about 10 min left)", "[2/3] stage 1 (about 4 min left)",
                      "[3/3] stage 2 (about 3 min left)"]
    one = st.Remaining([dataclasses.replace(stages[0], estimate=60.0)])
    assert one.left(0) == "about 60 s left" and one.left(1) == "about 0 s left"
