"""``danlu compress RUN --quantize int8 | --prune F``: kept apart so cli.py stays small; imports lazily."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from danlu.cli.output import print_json


def cmd_compress(a: argparse.Namespace) -> None:
    from danlu.errors import DanluError

    if (a.quantize is None) == (a.prune is None):
        raise DanluError("compress needs one of --quantize int8 or --prune FRACTION",
                         hint="to do both, prune first, then quantize the new run: danlu compress NEW_RUN "
                              "--quantize int8")
    say = (lambda msg: print(msg, file=sys.stderr if a.json else sys.stdout, flush=True))
    if a.quantize is not None:
        from danlu.compress.quantize import quantize_run

        result = quantize_run(a.run, calibration=a.calibration, per_channel=a.per_channel, max_drop=a.max_drop,
                              threads=a.threads, runs_dir=a.runs_dir, data_dir=a.data_dir, say=say)
        written = f"wrote {result.path} and {result.meta_path.name}; serve it with: danlu serve {result.run} " \
                  "--backend onnx-int8"
    else:
        from danlu.compress.prune import prune_run

        result = prune_run(a.run, a.prune, finetune_epochs=a.finetune_epochs, threads=a.threads,
                           runs_dir=a.runs_dir, data_dir=a.data_dir, progress=not a.json, say=say)
        written = f"new run: {result.run}"
    if a.json:
        print_json(result.as_json())
    else:
        print(result.table)
        print(written)


def add_compress_verb(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    c = sub.add_parser("compress", help="int8 quantization (ONNX Runtime) or structural pruning of a run, with a "
                                        "before/after table")
    c.add_argument("run")
    c.add_argument("--quantize", choices=["int8"], help="quantize model.onnx → model.int8.onnx (static QDQ for "
                                                        "conv nets, dynamic for Linear/LSTM/transformer)")
    c.add_argument("--calibration", type=int, default=256, help="training samples that calibrate static "
                                                                "quantization (256)")
    c.add_argument("--per-channel", action="store_true", help="one int8 scale per output channel")
    c.add_argument("--max-drop", type=float, default=1.0, help="refuse (nothing written) when int8 loses more "
                                                               "than this many points of the test metric (1)")
    c.add_argument("--prune", type=float, metavar="FRACTION", help="remove this fraction of every hidden layer's "
                                                                    "channels/units (Torch-Pruning) into a new run")
    c.add_argument("--structured", action="store_true", help="structural channel pruning (the only kind offered; "
                                                             "accepted for clarity)")
    c.add_argument("--finetune-epochs", type=float, default=1, help="epochs of fine-tuning after pruning (1)")
    c.add_argument("--threads", type=int, default=1, help="threads for the latency table, PyTorch and ONNX "
                                                          "Runtime alike (1)")
    c.add_argument("--json", action="store_true", help="print one JSON object last")
    common(c)
    c.set_defaults(func=cmd_compress)
