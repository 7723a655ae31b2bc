"""mu = 0 (spec S4) through the CLI, and the comparison table across kinds of runs."""

from __future__ import annotations

import json

from viclab.ablate.latent import run_latent
from viclab.cli import main
from viclab.config import LatentConfig
from viclab.losses import VICRegLoss

SMALL = ["model.projector=32-32", "train.batch_size=20", "train.epochs=1"]


def test_no_variance_trains_with_mu_zero_and_evaluates(tiny_run, tmp_path, capsys):
    _, root = tiny_run
    argv = ["ablate", "no-variance", "--preset", "cpu", "--data-dir", str(root), "--out", str(tmp_path),
            "--name", "nv", "--no-progress", *SMALL, "loss.var_weight=25"]  # the ablation's mu = 0 wins
    assert main(argv) == 0
    run = tmp_path / "nv"
    assert json.loads((run / "config.json").read_text())["loss"]["var_weight"] == 0.0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in (r for r in rows if r["split"] == "train"):  # loss = 25 inv + 1 cov: no variance in it
        assert abs(r["loss"] - (25 * r["invariance"] + r["covariance"])) < 1e-4 * max(1.0, r["loss"])
        assert r["variance"] > 0  # still logged
    assert VICRegLoss(var_weight=0.0).var_weight == 0.0
    assert main(["probe", str(run), "--data-dir", str(root), "--no-progress"]) == 0
    assert main(["plot", str(run), "--data-dir", str(root), "--no-progress"]) == 0
    assert (run / "eval" / "pca.png").stat().st_size > 0


def test_compare_rows_for_an_encoder_and_latent_codes(tiny_run, tmp_path, capsys):
    src, root = tiny_run
    run_latent(LatentConfig(pairs="naive", data_dir=str(root), dim=8, projector="16-16", batch_size=20, epochs=1),
               tmp_path / "lat", progress=False, echo=lambda s: None)
    assert main(["compare", str(src), str(tmp_path / "lat"), "--names", "vicreg", "latent", "--data-dir", str(root),
                 "--out", str(tmp_path / "cmp"), "--no-progress"]) == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"]}
    assert rows["vicreg"]["auroc"] is not None and rows["vicreg"]["n_test"] == 20
    assert rows["latent"]["auroc"] is None and "no encoder" in rows["latent"]["auroc_unavailable"]
    assert (rows["latent"]["n_train"], rows["latent"]["n_test"]) == (90, 10)
    for r in rows.values():
        assert 0 <= r["linear_top1"] <= 1 and -1 <= r["silhouette"] <= 1
    table = (tmp_path / "cmp" / "compare.md").read_text().splitlines()
    assert table[0].startswith("| run |") and "AUROC vs mnist" in table[0] and len(table) == 4
    assert "| latent | 90 / 10 held-out codes |" in table[3] and "| n/a |" in table[3]
