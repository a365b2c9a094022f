"""Explanation speed against issue 11's targets, and (--checks) the sanity checks' figures on a trained mnist-cnn.

    DANLU_DATA=/work/shared/datasets .venv/bin/python benchmarks/explain.py                # speed only (~1 min)
    .venv/bin/python benchmarks/explain.py --checks                                        # + trains mnist-cnn (~1 min)
    .venv/bin/python benchmarks/explain.py --checks --run runs/20260101-120000-mnist-cnn   # or a run you have
    .venv/bin/python benchmarks/explain.py --text-check runs/...-chnsenticorp-lstm          # sentiment-word check

Speed targets on the 2-core CPU: Grad-CAM for one 224 px image on EfficientNet-Lite0 < 0.5 s; integrated
gradients (32 steps) for one MNIST image on mnist-cnn < 0.2 s; 100 MNIST images with IG < 5 s. Each time is
the median of --repeat calls of ``danlu.explanations.images.attribute_images`` (what ``danlu explain`` and the
server run) after one warm-up, with the model's own forward + backward pass for one image timed in the same
run as the baseline: weights do not change the cost, so untrained weights are used unless --run is given.

--checks (Adebayo et al. 2018; Petsiuk et al. 2018): the mean Spearman rank correlation between the maps of
the trained model and of the same architecture re-initialized (100 test images; low = the maps depend on
what was learned), deletion and insertion AUCs of the explained class's probability for every image method
and for random maps (200 test images, black as the removed value), and IG's completeness error.
--text-check: on ChnSentiCorp test reviews predicted positive, how often IG's top characters sit inside a
fixed list of positive words, against random characters of the same reviews.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import SHARED, matmul_gflops, print_header  # noqa: E402


def median_time(fn, repeat: int) -> tuple[float, list[float]]:
    fn()  # warm-up: lazy initialization, allocator, Captum's first import
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def mnist_test(n: int):
    import numpy as np
    import torch

    from danlu.data.idx import load_idx_dataset

    root = SHARED / "datasets" / "mnist"
    if root.is_dir():
        images, labels = load_idx_dataset(root, "mnist")["test"]
        return torch.from_numpy(images[:n, None].copy()), torch.from_numpy(labels[:n]), "MNIST test images"
    gen = np.random.default_rng(0)
    return (torch.from_numpy(gen.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)), torch.zeros(n, dtype=torch.long),
            "random 28x28 images (no MNIST under DANLU_SHARED)")


def normalizer(mean: list[float], std: list[float], channels: int):
    from danlu.data.tensors import Normalizer

    return Normalizer(mean, std, channels)


def one_backward(model, x) -> None:
    """The baseline: one forward and backward pass for one input, as one IG step costs at batch 1."""
    x = x.clone().requires_grad_(True)
    model(x)[:, 0].sum().backward()


def speed(args: argparse.Namespace) -> list[tuple[str, float, float, float]]:
    import torch

    from danlu.explanations.images import attribute_images, black_baseline
    from danlu.explanations.inplace import no_inplace
    from danlu.models.basic import ConvNet
    from danlu.models.efficientnet import build_efficientnet_lite0

    rows = []
    # EfficientNet-Lite0, 224 px, Grad-CAM on its declared layer (ImageNet weights when the package is there)
    try:
        lite = build_efficientnet_lite0(2, weights="imagenet").eval()
        weights = "ImageNet weights, 2-class head"
    except Exception as e:  # noqa: BLE001 - the weights package is optional; the cost is the same without it
        lite = build_efficientnet_lite0(2, weights=None).eval()
        weights = f"random weights ({type(e).__name__})"
    norm = normalizer([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 3)
    x224 = norm(torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    target = torch.zeros(1, dtype=torch.long)
    base224 = black_baseline(norm, (3, 224, 224))
    with no_inplace(lite):
        fb, _ = median_time(lambda: one_backward(lite, x224), args.repeat)
    t, times = median_time(lambda: attribute_images(lite, x224, target, "gradcam", model_name="efficientnet_lite0",
                                                    baseline=base224), args.repeat)
    rows.append((f"Grad-CAM, 1 image 224 px, EfficientNet-Lite0 ({weights})", t, 0.5, fb))

    # mnist-cnn (article 4's CNN), IG 32 steps
    if args.run:
        from danlu.predictor import Predictor

        predictor = Predictor.load(args.run)
        cnn, norm28, name = predictor.model.eval(), predictor.normalize, predictor.recipe.model.name
    else:
        cnn, name = ConvNet((1, 28, 28), 10).eval(), "cnn"
        norm28 = normalizer([0.1307], [0.3081], 1)
    pixels, _, source = mnist_test(100)
    x = norm28(pixels)
    base28 = black_baseline(norm28, (1, 28, 28))
    with no_inplace(cnn):
        fb, _ = median_time(lambda: one_backward(cnn, x[:1]), args.repeat)
    with torch.no_grad():
        targets = cnn(x).argmax(1)
    t, _ = median_time(lambda: attribute_images(cnn, x[:1], targets[:1], "ig", model_name=name, baseline=base28),
                       args.repeat)
    rows.append((f"IG 32 steps, 1 image, mnist-cnn ({source})", t, 0.2, fb))
    t, _ = median_time(lambda: attribute_images(cnn, x, targets, "ig", model_name=name, baseline=base28),
                       max(1, args.repeat // 3))
    rows.append(("IG 32 steps, 100 images batched, mnist-cnn", t, 5.0, fb))
    t, _ = median_time(lambda: attribute_images(cnn, x[:1], targets[:1], "gradcam", model_name=name, baseline=base28),
                       args.repeat)
    rows.append(("Grad-CAM, 1 image, mnist-cnn", t, float("nan"), fb))
    return rows


def checks(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from danlu.explanations.checks import deletion_insertion, mean_spearman, random_maps, spearman
    from danlu.explanations.images import attribute_images, black_baseline
    from danlu.predictor import Predictor
    from danlu.prepare import build_model

    run = args.run
    if run is None:
        from danlu.api import train

        t0 = time.perf_counter()
        run = train("mnist-cnn", [], runs_dir=Path(tempfile.mkdtemp(prefix="explain-bench-")), progress=False).run
        print(f"trained mnist-cnn in {time.perf_counter() - t0:.0f} s: {run}")
    predictor = Predictor.load(run)
    model, name = predictor.model.eval(), predictor.recipe.model.name
    pixels, labels, source = mnist_test(200)
    x = predictor.normalize(pixels)
    base = black_baseline(predictor.normalize, tuple(predictor.schema.input_shape))
    with torch.no_grad():
        targets = model(x).argmax(1)
    print(f"\n## Sanity checks on {run} ({source}; accuracy on these {len(x)}: "
          f"{float((targets == labels).float().mean()):.3f})\n")

    torch.manual_seed(12345)
    fresh = build_model(predictor.recipe, predictor.schema).eval()  # the same architecture, new random weights
    print("| method | randomization: mean Spearman, trained vs re-initialized (100 images) |\n| --- | --- |")
    for method in ("gradcam", "guided_gradcam", "ig"):
        a, _ = attribute_images(model, x[:100], targets[:100], method, model_name=name, baseline=base)
        b, _ = attribute_images(fresh, x[:100], targets[:100], method, model_name=name, baseline=base)
        # an empty map (Guided Grad-CAM where Grad-CAM is nowhere positive) has no ranking: such pairs left out
        ranks = (a.flatten(1).std(1) > 0) & (b.flatten(1).std(1) > 0)
        empty = f"; {int((a.flatten(1).std(1) == 0).sum())} trained maps empty, {int((~ranks).sum())} pairs left out"
        a, b, xs = a[ranks], b[ranks], x[:100][ranks]
        signed, magnitude = mean_spearman(a, b), mean_spearman(a.abs(), b.abs())
        # IG's map is (x - baseline) x mean gradient: zero wherever the pixel equals the black baseline, for
        # any weights, so magnitudes agree on MNIST's background whatever the model; ranked on the digit's pixels
        keep = (xs != base).any(1)
        on_digit = float(np.mean([spearman(a[i][keep[i]].abs().numpy(), b[i][keep[i]].abs().numpy())
                                  for i in range(len(keep))]))
        print(f"| {method} | {signed:.3f} signed, {magnitude:.3f} of magnitudes, {on_digit:.3f} of magnitudes on the "
              f"digit's pixels (target < 0.3){empty} |")

    print("\n| method | deletion AUC (lower is better) | insertion AUC (higher is better) | s |")
    print("| --- | --- | --- | --- |")
    for method in ("gradcam", "guided_gradcam", "ig", "saliency", "occlusion", "random"):
        t0 = time.perf_counter()
        if method == "random":
            maps, deltas = random_maps((len(x), *x.shape[2:])), None
        else:
            maps, deltas = attribute_images(model, x, targets, method, model_name=name, baseline=base)
        took = time.perf_counter() - t0
        # (Guided) Grad-CAM ranks by its signed map (positive = for, what the pictures show), the others by magnitude
        ranked = maps if method in ("gradcam", "guided_gradcam") else maps.abs()
        dele, ins = deletion_insertion(model, x, targets, ranked, base)
        print(f"| {method} | {np.mean(dele):.3f} | {np.mean(ins):.3f} | {took:.1f} |")
        if deltas is not None:
            with torch.no_grad():  # IG explains the logit: delta relative to f(x) - f(black) there
                change = model(x).gather(1, targets[:, None])[:, 0] - model(base)[0, targets]
            rel = (deltas.abs() / change.abs().clamp(min=1e-6)).numpy()
            print(f"|   IG completeness: median {np.median(rel):.2%}, 95th percentile {np.percentile(rel, 95):.2%}, "
                  f"over 5 %: {int((rel > 0.05).sum())} of {len(rel)} | | | |")


# Positive sentiment words common in ChnSentiCorp's hotel, book and laptop reviews (a fixed list, written
# before looking at any attribution): the check asks whether IG's top characters fall inside them.
POSITIVE_WORDS = ("好", "不错", "满意", "推荐", "舒适", "舒服", "干净", "方便", "喜欢", "棒", "值得", "热情", "周到",
                  "漂亮", "优美", "划算", "实惠", "赞", "优秀", "精彩", "感动", "完美", "好看", "清晰", "流畅", "好用",
                  "便宜", "安静", "宽敞", "温馨", "快", "爱", "美", "开心", "愉快", "超值", "物有所值")


def text_check(run: str | None, n: int = 100, k: int = 3) -> None:
    """For the first ``n`` ChnSentiCorp test reviews the run predicts positive: how often IG's ``k`` top
    characters (for the positive class) sit inside a positive word, against k random characters of the same
    review (its expected rate: the share of the review's characters inside such words)."""
    import gzip

    import numpy as np

    from danlu.explanations.api import Explainer

    if run is None:
        from danlu.api import train

        t0 = time.perf_counter()
        run = train("chnsenticorp-lstm", ["train.epochs=1"], runs_dir=Path(tempfile.mkdtemp(prefix="explain-bench-")),
                    progress=False).run
        print(f"trained chnsenticorp-lstm (1 epoch) in {time.perf_counter() - t0:.0f} s: {run}")
    lines = gzip.open(SHARED / "datasets" / "chnsenticorp" / "test.tsv.gz", "rt", encoding="utf-8").read().splitlines()
    texts = [line.split("\t", 1)[1] for line in lines[1:n + 1]]
    explainer = Explainer.load(run, "ig")
    classes = [str(c) for c in explainer.schema.classes]
    positive = "positive" if "positive" in classes else "1" if "1" in classes else classes[-1]
    t0 = time.perf_counter()
    records = explainer.explain(texts, target=positive)
    took = time.perf_counter() - t0
    top_hits, random_hits, used, deltas = [], [], 0, []
    for rec in records:
        if rec["top"][0]["label"] != positive or not rec["tokens"]:
            continue
        used += 1
        tokens = [t for t, _ in rec["tokens"]]
        scores = np.array([s for _, s in rec["tokens"]])
        text = "".join(tokens)
        covered = np.zeros(len(text), dtype=bool)
        for word in POSITIVE_WORDS:
            start = text.find(word)
            while start >= 0:
                covered[start:start + len(word)] = True
                start = text.find(word, start + 1)
        starts = np.cumsum([0] + [len(t) for t in tokens[:-1]])
        inside = np.array([covered[a:a + len(t)].any() for a, t in zip(starts, tokens, strict=True)])
        top = np.argsort(-scores)[:k]
        top_hits.append(inside[top].mean())
        random_hits.append(inside.mean())
        deltas.append(rec.get("completeness_error", float("nan")))
    print(f"\n## Text check on {run}: first {n} ChnSentiCorp test reviews, {used} predicted '{positive}' "
          f"(IG, {took:.1f} s for all {n})\n")
    print(f"- top-{k} IG characters inside a positive word: {np.mean(top_hits):.1%}")
    print(f"- {k} random characters of the same reviews (expected): {np.mean(random_hits):.1%}")
    print(f"- IG completeness error: median {np.nanmedian(deltas):.2%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (median reported)")
    ap.add_argument("--run", help="a trained mnist-cnn run (default: untrained weights for speed, a fresh run for "
                                  "--checks)")
    ap.add_argument("--checks", action="store_true", help="also the sanity checks' figures")
    ap.add_argument("--text-check", nargs="?", const="train", metavar="RUN",
                    help="also the sentiment-word check on a chnsenticorp-lstm run (no RUN: train one for 1 epoch)")
    args = ap.parse_args()
    print_header("danlu explain: speed (issue 11)")
    import captum

    print(f"- captum: {captum.__version__}\n")
    rows = speed(args)
    print("| what | median | target | one forward + backward (baseline) | meets |\n| --- | --- | --- | --- | --- |")
    for what, t, target, fb in rows:
        meets = "—" if target != target else ("yes" if t < target else "NO")
        shown = f"< {target:g} s" if target == target else "—"
        print(f"| {what} | {t * 1000:.0f} ms | {shown} | {fb * 1000:.1f} ms | {meets} |")
    if args.checks:
        checks(args)
    if args.text_check:
        text_check(None if args.text_check == "train" else args.text_check)
    print(f"\nmatmul probe after: {matmul_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
