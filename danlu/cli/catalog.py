"""What danlu offers and what data looks like: ``danlu models``, ``danlu recipes``, ``danlu data describe``,
and ``danlu scratch worked-example``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from danlu.cli.output import print_json


def cmd_models(a: argparse.Namespace) -> None:
    from danlu.models.specs import MODELS, option_help

    for name, (_, kinds, desc) in MODELS.items():
        print(f"{name:<20} [{'/'.join(kinds)}] {desc}")
        print(f"{'':<20} {parameter_count(name)}")
        print(f"{'':<20} options: {option_help(name)}")
    from danlu.models.recommend_specs import RECOMMENDERS

    for name, (_, desc) in RECOMMENDERS.items():  # fit on a user-item table (danlu/recommend/)
        print(f"{name:<20} [interactions] {desc}")
        print(f"{'':<20} options: {option_help(name)}")


def parameter_count(name: str) -> str:
    """Parameters of the model built with its default options on an example input (counted, not quoted)."""
    from danlu.errors import DanluError
    from danlu.models import build, count_parameters
    from danlu.schema import Schema

    examples = {
        "mlp": (Schema("image", "classification", [1, 28, 28], classes=[str(i) for i in range(10)]), "MNIST"),
        "cnn": (Schema("image", "classification", [1, 28, 28], classes=[str(i) for i in range(10)]), "MNIST"),
        "simple_cnn": (Schema("image", "classification", [3, 32, 32], classes=[str(i) for i in range(10)]),
                       "CIFAR-10"),
        "fast_resnet": (Schema("image", "classification", [3, 32, 32], classes=[str(i) for i in range(10)]),
                        "CIFAR-10"),
    }
    audio = Schema("audio", "classification", [16000], classes=["tone1", "tone2", "tone3", "tone4"],
                   audio={"sample_rate": 16000, "seconds": 1.0, "fit": "center", "samples": 16000})
    for audio_model in ("bc_resnet", "tone_net"):
        examples[audio_model] = (audio, "1 s at 16 kHz, 4 classes")
    text = Schema("text", "classification", [128], classes=["neg", "pos"], text={"vocab_size": 5000, "pad_id": 0})
    image = Schema("image", "classification", [3, 224, 224], classes=["a", "b"])
    schema, where = examples.get(name, (text, "5,000-token vocab, 2 classes") if name in (
        "lstm", "article_lstm", "textcnn", "transformer") else (image, "224 px, 2 classes"))
    options = {"weights": None} if name.startswith(("resnet", "efficientnet")) else {}
    try:
        total, trainable = count_parameters(build(name, options, schema))
    except (DanluError, ImportError, OSError) as e:
        return f"parameters: unavailable here ({str(e).splitlines()[0][:80]})"
    return f"{total:,} parameters on {where}"


def cmd_recipes(a: argparse.Namespace) -> None:
    from danlu.recipe import builtin_recipes, load_recipe

    if a.name:
        print(load_recipe(a.name, a.overrides).to_yaml())
        return
    for name, what in builtin_recipes().items():
        print(f"{name:<28} {what}")


def cmd_data(a: argparse.Namespace) -> None:
    from danlu.data.describe import describe
    from danlu.printable import terminal_safe
    from danlu.recommend.describe import describe_if_interactions

    text = describe_if_interactions(a.recipe, a.overrides, a.data_dir)  # user-item tables (danlu/recommend/)
    if text is None:
        text = describe(a.recipe, a.overrides, data_dir=a.data_dir)
    print(terminal_safe(text, keep_newlines=True))


def cmd_scratch(a: argparse.Namespace) -> None:
    from danlu.scratch.worked_example import as_json, render, worked_example

    sections = worked_example()
    if a.json:
        print_json(as_json(sections))
    else:
        print(render(sections))


def add_catalog_verbs(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    m = sub.add_parser("models", help="list models with their options and sizes")
    m.set_defaults(func=cmd_models)

    rc = sub.add_parser("recipes", help="list built-in recipes, or print one resolved: danlu recipes NAME")
    rc.add_argument("name", nargs="?")
    rc.add_argument("overrides", nargs="*")
    rc.set_defaults(func=cmd_recipes)

    d = sub.add_parser("data", help="inspect data: danlu data describe RECIPE [key=value ...]")
    d.add_argument("action", choices=["describe"])
    d.add_argument("recipe")
    d.add_argument("overrides", nargs="*")
    common(d)
    d.set_defaults(func=cmd_data)

    sc = sub.add_parser("scratch", help="the articles' math redone in numpy: danlu scratch worked-example")
    sc.add_argument("action", choices=["worked-example"])
    sc.add_argument("--json", action="store_true", help="the numbers as one JSON object")
    sc.set_defaults(func=cmd_scratch)
