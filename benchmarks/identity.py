"""Fingerprints of fixed-seed CPU runs of every training objective, to compare code versions.

Runs VICReg, mu = 0, neighbour views and latent optimisation (naive and graph pairs) for two
epochs on a small synthetic image folder, and prints (and writes to ``--out``) the SHA-256 of
each run's final weights and of its logged metrics. Run it on two versions of viclab (e.g.
``PYTHONPATH=/tmp/base/src python benchmarks/identity.py --out a.json`` against the working
tree) and compare: a refactoring that changes no behaviour gives identical fingerprints.

    python benchmarks/identity.py --out /tmp/new.json [--compare /tmp/old.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TERMS = ("loss", "invariance", "variance", "covariance")


def make_folder(root: Path, n_train: int = 192, n_test: int = 32, classes: int = 3, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            c = i % classes
            d = root / split / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            base = np.zeros((size, size, 3), np.float64)
            base[..., c] = 160
            img = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:04d}.png")
    return root


def tensors_sha(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def metrics_sha(run: Path) -> tuple[str, str, int]:
    """Hash of the (split, epoch, step, terms) of every record, and of the learning rates logged."""
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    core = [[r["split"], r["epoch"], r["step"], *[r[k] for k in TERMS]] for r in recs]
    lrs = [r["lr"] for r in recs if "lr" in r]
    return (hashlib.sha256(json.dumps(core).encode()).hexdigest()[:16],
            hashlib.sha256(json.dumps(lrs).encode()).hexdigest()[:16], len(recs))


def fingerprint(run: Path) -> dict:
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    core, lrs, n = metrics_sha(run)
    return {"weights": tensors_sha(ckpt["model"]), "metrics": core, "lr": lrs, "records": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", help="a JSON written by another version: report equality")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from viclab.ablate import neighbours_config, run_latent
    from viclab.config import PRESETS, LatentConfig, LossConfig
    try:  # the training package was viclab.train before the one-house layout
        from viclab.engine import train
    except ImportError:
        from viclab.train import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["VICLAB_CACHE"] = str(tmp / "cache")
        data = str(make_folder(tmp / "images"))
        base = PRESETS["cpu"]
        cfg = replace(base, data=replace(base.data, dataset="folder", data_dir=data),
                      augment=replace(base.augment, size=16, blur_kernel=3),
                      model=replace(base.model, backbone="small_cnn", projector="64-64", channels_last=False),
                      optim=replace(base.optim, warmup_epochs=0.5),
                      train=replace(base.train, epochs=2, batch_size=32, seed=3, device="cpu", precision="fp32"))
        out = {}
        say = lambda s: None
        try:  # since the one-house change, the engine takes a Context instead of progress= and echo=
            from viclab.core.context import Context
            quiet = {"ctx": Context(progress=False, echo=say)}
        except ImportError:
            quiet = {"progress": False, "echo": say}
        train(cfg, tmp / "vicreg", **quiet)
        out["vicreg"] = fingerprint(tmp / "vicreg")
        cl = replace(cfg, model=replace(cfg.model, channels_last=True), optim=replace(cfg.optim, schedule="cosine"))
        train(cl, tmp / "vicreg_cl", **quiet)
        out["vicreg_channels_last_cosine"] = fingerprint(tmp / "vicreg_cl")
        novar = replace(cfg, loss=replace(cfg.loss, var_weight=0.0))
        train(novar, tmp / "novar", **quiet)
        out["mu0"] = fingerprint(tmp / "novar")
        nb = neighbours_config(str(tmp / "vicreg"), base=cfg, k=3, epochs=2)
        try:  # between the one-engine change and the view-source registry, the neighbour views were passed in
            from viclab.ablate import VIEWS
            extra = {"views": VIEWS["neighbours"]}
        except ImportError:
            extra = {}
        train(nb, tmp / "neighbours", **quiet, **extra)
        out["neighbours"] = fingerprint(tmp / "neighbours")
        for pairs in ("naive", "graph"):
            lc = LatentConfig(pairs=pairs, dataset="folder", data_dir=data, dim=16, projector="32-32",
                              graph_features="random:conv4", graph_k=5, epochs=3, batch_size=32, seed=1,
                              loss=LossConfig())
            run_latent(lc, tmp / f"latent-{pairs}", **quiet)
            out[f"latent_{pairs}"] = fingerprint(tmp / f"latent-{pairs}")
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for name, fp in out.items():
        print(f"{name:16s} weights {fp['weights']}  metrics {fp['metrics']}  lr {fp['lr']}  ({fp['records']} records)")
    if args.compare:
        old = json.loads(Path(args.compare).read_text())
        same = True
        for name, fp in out.items():
            if name not in old:
                continue
            keys = ("weights", "metrics") + (("lr",) if old[name]["lr"] != hashlib.sha256(b"[]").hexdigest()[:16]
                                            else ())
            eq = all(old[name][k] == fp[k] for k in keys)
            same &= eq
            print(f"{name:16s} {'identical' if eq else 'DIFFERENT'} ({', '.join(keys)})")
        print("all identical" if same else "SOME DIFFER")


if __name__ == "__main__":
    main()
