"""The CLI: one library call per subcommand; user mistakes are one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from viclab.cli import main

SMALL = ["model.backbone=small_cnn", "model.projector=32-32", "train.batch_size=20", "train.epochs=1"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("viclab: error: "), err
    return err[0]


@pytest.mark.parametrize("argv,fragment", [
    (["train", "--preset", "huge"], "unknown preset 'huge'"),
    (["train", "model.backbone=vit99"], "unknown backbone 'vit99'"),
    (["train", "optim.lr=fast"], "optim.lr='fast' is not a valid float"),
    (["train", "--config", "/nonexistent.toml"], "does not exist"),
    (["train", "--resume", "/nonexistent-run"], "not a viclab run folder"),
    (["trian"], "invalid choice"),
    (["ablate", "latent", "--pairs", "both"], "pairs='both' is unknown"),
    (["ablate", "laplacian", "--solver", "qr"], "solver='qr' is unknown"),
    (["ablate", "neighbours", "/nonexistent-run"], "does not exist"),
    (["ablate", "neighbours", "random:small_cnn", "optim.lr"], "cannot read override"),
    (["compare"], "required: SOURCE"),
    (["study", "--preset", "gpu"], "unknown study preset 'gpu'"),
    (["study", "latent.colour=red"], "unknown config key 'latent.colour'"),
    (["study", "study.neighbour_k=0"], "study.neighbour_k=0 must be >= 1"),
    (["study", "eval.clusters=many"], "eval.clusters='many' is not a valid int"),
])
def test_user_mistakes(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VICLAB_DATA", str(tmp_path / "nodata"))
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    assert main(argv) == 2
    assert fragment in _one_error_line(capsys)


def test_missing_data_names_files(capsys, tmp_path, monkeypatch):
    import urllib.error

    def offline(*a, **k):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    assert main(["train", "--preset", "cpu", "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert "cifar-10-python.tar.gz" in line and str(tmp_path / "d") in line


def test_train_then_resume_via_cli(fake_cifar_root, tmp_path, capsys):
    args = ["train", "--preset", "cpu", "--data-dir", str(fake_cifar_root), "--out", str(tmp_path), "--name", "r",
            "--no-progress", *SMALL]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "inv" in out and "var" in out and "cov" in out
    assert (tmp_path / "r" / "encoder.safetensors").exists()
    # resuming a finished run is a no-op; a changed override is refused
    assert main(["train", "--resume", str(tmp_path / "r"), "--no-progress"]) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "optim.lr=0.1"]) == 2
    assert "different config" in _one_error_line(capsys)
    assert main(args) == 2
    assert "already exists" in _one_error_line(capsys)


def test_console_entry_point_has_no_traceback():
    r = subprocess.run([sys.executable, "-m", "viclab", "train", "loss.variant=x"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "viclab: error: loss.variant='x' is unknown; use 'spec' or 'official'"


@pytest.fixture
def tiny_eval_run(fake_cifar_root, tmp_path, monkeypatch, capsys):
    from tests.conftest import write_fake_mnist

    write_fake_mnist(fake_cifar_root, n=12)
    monkeypatch.setenv("VICLAB_CACHE", str(tmp_path / "cache"))
    args = ["train", "--preset", "cpu", "--data-dir", str(fake_cifar_root), "--out", str(tmp_path), "--name", "r",
            "--no-progress", *SMALL]
    assert main(args) == 0
    capsys.readouterr()
    return tmp_path / "r", fake_cifar_root


def test_eval_subcommands(tiny_eval_run, tmp_path, capsys):
    run, root = tiny_eval_run
    common = ["--data-dir", str(root), "--no-progress"]
    assert main(["probe", str(run), *common, "--knn-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "linear probe top-1" in out and "5-NN top-1" in out
    assert json.loads((run / "eval" / "probe.json").read_text())["knn"]["k"] == 5
    assert main(["retrieve", str(run / "encoder.safetensors"), *common, "-k", "2", "--out", str(tmp_path / "q")]) == 0
    assert "precision@2" in capsys.readouterr().out
    assert main(["anomaly", str(run), "random:small_cnn", *common, "--names", "vicreg", "random",
                 "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "vicreg: AUROC" in out and "random: AUROC" in out and (tmp_path / "a" / "roc.png").exists()
    assert main(["cluster", str(run), *common, "--clusters", "3", "--out", str(tmp_path / "c")]) == 0
    assert "silhouette" in capsys.readouterr().out


@pytest.mark.parametrize("argv,fragment", [
    (["probe", "/nonexistent"], "does not exist"),
    (["probe", "random:vit99"], "unknown backbone 'vit99'"),
    (["cluster", "random:small_cnn", "--clusters", "1"], "clusters=1 must be >= 2"),
    (["anomaly", "random:small_cnn", "--names", "a", "b"], "2 names for 1 sources"),
    (["anomaly", "random:small_cnn", "--anomalies", "svhn"], "unknown dataset 'svhn'"),
    (["anomaly", "random:small_cnn", "--anomalies", "cifar10"], "trained on cifar10, so it cannot serve"),
])
def test_eval_mistakes(argv, fragment, capsys, tiny_eval_run):
    _, root = tiny_eval_run
    assert main([*argv, "--data-dir", str(root), "--no-progress"]) == 2
    assert fragment in _one_error_line(capsys)


def test_split_command(tmp_path, capsys):
    for c in ("a", "b"):
        (tmp_path / "src" / c).mkdir(parents=True)
        for i in range(10):
            (tmp_path / "src" / c / f"{i}.png").write_bytes(f"{c}{i}".encode())
    assert main(["split", str(tmp_path / "src"), str(tmp_path / "dst"), "--ratios", "0.8", "0.1", "0.1",
                 "--mode", "copy"]) == 0
    assert capsys.readouterr().out.startswith("train 16, val 2, test 2 images of 2 classes")
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["manifest.csv", "test", "train", "val"]
    assert main(["split", str(tmp_path / "src"), str(tmp_path / "dst")]) == 2
    assert "exists and is not empty" in _one_error_line(capsys)


def _subparsers(parser):
    """Every leaf subcommand parser, by its full name (``detect fit``)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = list(_subparsers(sub))
                yield from inner or [(name, sub)]


def test_one_grammar_every_subcommand_takes_overrides_and_a_config_file():
    from viclab.cli import build_parser

    leaves = dict(_subparsers(build_parser()))
    assert len(leaves) == 17
    for name, p in leaves.items():
        dests = {a.dest for a in p._actions}
        assert {"overrides", "config"} <= dests, name
        # every other option is a config field (section.field) or one of the shared few
        assert dests - {"overrides", "config", "help"} <= {d for d in dests if "." in d} | {
            "data_dir", "out", "no_progress", "dataset", "no_cache", "anomalies", "names", "abnormal", "preset",
            "name", "resume", "views", "detector", "source", "sources", "detectors", "clip", "src", "dst"}, name


def test_flags_and_overrides_land_in_the_same_config(tmp_path):
    from viclab.cli import _config, _gather_overrides, build_parser

    parser = build_parser()
    toml = tmp_path / "e.toml"
    toml.write_text("[eval]\nclusters = 4\nseed = 9\n")
    args, rest = parser.parse_known_args(["anomaly", "A", "B", "eval.seed=3", "-k", "5", "--config", str(toml)])
    _gather_overrides(parser, args, rest)
    assert args.sources == ["A", "B"] and args.overrides == ["eval.seed=3"]
    cfg = _config(args)  # file, then flags, then overrides
    assert (cfg.clusters, cfg.anomaly_k, cfg.seed) == (4, 5, 3)
    args = parser.parse_args(["split", "s", "d", "split.mode=copy", "--ratios", "0.5", "0.5"])
    assert _config(args).ratios == (0.5, 0.5) and _config(args).mode == "copy"
    args = parser.parse_args(["detect", "monitor", "D", "--batch-size", "8", "--out", "o"])
    assert (_config(args).batch_size, _config(args).stream) == (8, "normal:20,anomalous:5,normal:10,anomalous:5")


@pytest.mark.parametrize("argv,fragment", [
    (["detect", "score", "D", "--out", "o", "--top", "0"], "--top 0 must be >= 1"),
    (["detect", "monitor", "D", "--out", "o", "monitor.colour=red"], "unknown config key 'monitor.colour'"),
    (["split", "s", "d", "split.seed=x"], "split.seed='x' is not a valid int"),
    (["sound", "resynth", "c.wav", "--out", "o", "--detector", "D", "sound.n_mels=64"], "--detector fixes the sound"),
    (["probe", "R", "eval.knn_k=0"], "knn_k=0 must be >= 1"),
    (["detect", "fit", "--out", "o", "detect.detector=knnn"], "detect.detector='knnn' is unknown; use knn,"),
])
def test_every_subcommand_reads_its_overrides(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert fragment in _one_error_line(capsys)


def _readme_commands() -> list[str]:
    """Every ``viclab ...`` command line in the code blocks of README.md and docs/ (comments cut, ``a; b`` split)."""
    import re
    import shlex

    root = Path(__file__).resolve().parents[1]
    lines = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        fenced = False
        for line in doc.read_text().replace("\\\n", " ").splitlines():  # continued lines joined
            fenced ^= line.lstrip().startswith("```")
            for part in line.split("#")[0].split(";") if fenced else ():
                part = part.strip().removeprefix(".venv/bin/")
                if re.match(r"^viclab \w", part) and "..." not in part:
                    lines.append(part.replace("$W", "weights/w.safetensors"))
    return [shlex.join(shlex.split(c)) for c in dict.fromkeys(lines)]


@pytest.mark.parametrize("command", _readme_commands())
def test_every_documented_command_parses(command):
    """Each command the README and docs show is accepted by the parser as written (aliases included)."""
    import shlex

    from viclab.cli import build_parser

    args = build_parser().parse_args(shlex.split(command)[1:])
    assert callable(getattr(args, "func", None)) or getattr(args, "command", None)
