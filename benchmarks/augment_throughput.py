"""Batched on-device augmentation vs the usual per-image PIL pipeline in a DataLoader.

Both implement the exercise's T (spec §2) on CIFAR-sized uint8 images; the PIL
version is what the course and most repositories run (torchvision-style transforms
per image in DataLoader workers), written here with PIL + NumPy since torchvision
cannot load on these machines. Reports augmented images/s (one view per image),
median of several runs, side by side in one process.

    python benchmarks/augment_throughput.py [--images 4096] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, write_result  # noqa: E402

from viclab.config import AugmentConfig  # noqa: E402
from viclab.views import Augment  # noqa: E402


class PILViewT:
    """Per-image T with PIL, following torchvision's PIL code paths."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg
        self.mean = np.array(cfg.mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.array(cfg.std, dtype=np.float32).reshape(3, 1, 1)

    def crop_box(self, w: int, h: int) -> tuple[int, int, int, int]:
        c, area = self.cfg, w * h
        for _ in range(10):
            target = area * random.uniform(*c.crop_scale)
            aspect = math.exp(random.uniform(math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1])))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                top, left = random.randint(0, h - ch), random.randint(0, w - cw)
                return left, top, left + cw, top + ch
        return 0, 0, w, h

    def __call__(self, img: Image.Image) -> torch.Tensor:
        c = self.cfg
        img = img.resize((c.size, c.size), Image.BILINEAR, box=self.crop_box(*img.size))
        if random.random() < c.hflip_p:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if random.random() < c.jitter_p:
            ops = [
                lambda im: ImageEnhance.Brightness(im).enhance(random.uniform(1 - c.brightness, 1 + c.brightness)),
                lambda im: ImageEnhance.Contrast(im).enhance(random.uniform(1 - c.contrast, 1 + c.contrast)),
                lambda im: ImageEnhance.Color(im).enhance(random.uniform(1 - c.saturation, 1 + c.saturation)),
                lambda im: self.hue(im, random.uniform(-c.hue, c.hue)),
            ]
            random.shuffle(ops)
            for op in ops:
                img = op(img)
        if random.random() < c.grayscale_p:
            img = img.convert("L").convert("RGB")
        if random.random() < c.blur_p:
            img = img.filter(ImageFilter.GaussianBlur(radius=random.uniform(*c.blur_sigma)))
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((x - self.mean) / self.std)

    @staticmethod
    def hue(img: Image.Image, shift: float) -> Image.Image:
        h, s, v = img.convert("HSV").split()
        h = Image.fromarray((np.asarray(h, dtype=np.uint8) + np.uint8(round(shift * 255) % 256)).astype(np.uint8), "L")
        return Image.merge("HSV", (h, s, v)).convert("RGB")


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, cfg: AugmentConfig) -> None:
        self.images, self.t = images, PILViewT(cfg)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.t(Image.fromarray(self.images[i]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cfg = AugmentConfig()
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    chw = torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()
    results = {}

    aug, gen = Augment(cfg), torch.Generator().manual_seed(0)

    def batched():
        for s in range(0, args.images, args.batch):
            aug(chw[s:s + args.batch], gen)

    med, times = median_time(batched, args.repeats)
    results["viclab_batched_cpu"] = {"images_per_s": args.images / med, "median_s": med, "times_s": times}

    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(PILDataset(hwc, cfg), batch_size=args.batch, num_workers=workers,
                                             persistent_workers=workers > 0)

        def pil():
            for _ in loader:
                pass

        med, times = median_time(pil, args.repeats)
        results[f"pil_dataloader_workers{workers}"] = {"images_per_s": args.images / med, "median_s": med,
                                                      "times_s": times}

    base = results["viclab_batched_cpu"]["images_per_s"]
    for name, r in results.items():
        r["speedup_of_viclab"] = base / r["images_per_s"]
        print(f"{name:28s} {r['images_per_s']:10.0f} images/s   viclab is {r['speedup_of_viclab']:.1f}x")
    write_result("augment_throughput", {"images": args.images, "batch": args.batch, "repeats": args.repeats,
                                        "note": "one augmented view per image, 32x32 uint8 input, spec §2 T",
                                        "results": results})


if __name__ == "__main__":
    main()
