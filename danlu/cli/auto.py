"""`danlu train PATH` (a recipe chosen from the data): call train_auto, print the kept run like `danlu train`."""

from __future__ import annotations

import argparse
import json


def cmd_train_data(a: argparse.Namespace) -> None:
    from danlu.autorecipe.run import parse_duration, train_auto

    if a.nproc is not None:
        from danlu.errors import DanluError

        raise DanluError("--nproc trains a recipe; a data path first needs one chosen",
                         hint=f"danlu train {a.recipe} (one process), then danlu train RUN/recipe.yaml --nproc "
                              f"{a.nproc}")
    limit = parse_duration(a.time_limit) if a.time_limit is not None else None
    overrides = list(a.overrides)
    if a.track:
        overrides.append(f"train.track={json.dumps(a.track)}")
    out = train_auto(a.recipe, overrides, time_limit=limit, runs_dir=a.runs_dir, data_dir=a.data_dir,
                     progress=not a.quiet)
    result = out.result
    if a.json:
        from danlu.cli.output import print_json

        print_json({**result.as_json(), "kept": out.kept, "leaderboard": [e.as_json() for e in out.board]})
    else:
        print((result.run / "report.md").read_text(encoding="utf-8"))
        print(f"run folder: {result.run}  ({result.wall_s:.1f} s)")
