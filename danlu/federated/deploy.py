"""Submitting a federation to a real SuperLink: the same ServerApp and ClientApp, packaged as a Flower App.

``danlu federate RECIPE --superlink HOST:PORT`` writes a throwaway Flower App (a pyproject.toml naming
``danlu.federated.server:app`` and ``danlu.federated.client:app``, the run config filled in) and hands it to
``flwr run --stream``; the SuperLink starts the ServerApp, which writes the run folder, and the SuperNodes run
the ClientApp. danlu must be installed wherever those run (the App carries no code of its own).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from danlu.errors import DanluError


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DanluError(f"--superlink {address}: expected HOST:PORT",
                         hint="the SuperLink's control API, e.g. --superlink 127.0.0.1:9093")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, before anything is written, when nothing listens at the SuperLink's control API."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as e:
        raise DanluError(f"cannot reach a SuperLink at {address}: {e.strerror or e}",
                         hint="start one there (flower-superlink --insecure), check the host and the control API "
                              "port (9093 by default), or leave --superlink out to simulate on this machine") from None


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    import json

    return json.dumps(str(value))  # a TOML basic string takes JSON's escapes


def write_app(folder: Path, run_config: dict[str, Any]) -> None:
    """The Flower App that points at danlu's ServerApp and ClientApp."""
    config = "\n".join(f"{key} = {toml_value(v)}" for key, v in run_config.items())
    (folder / "pyproject.toml").write_text(f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "danlu-federate"
version = "1.0.0"
description = "danlu's federated training (ServerApp and ClientApp live in the danlu package)"
dependencies = []

[tool.flwr.app]
publisher = "danlu"

[tool.flwr.app.components]
serverapp = "danlu.federated.server:app"
clientapp = "danlu.federated.client:app"

[tool.flwr.app.config]
{config}
""", encoding="utf-8")
    (folder / "danlu_federate.py").write_text('"""Placeholder module: the apps are in danlu.federated."""\n',
                                              encoding="utf-8")


def write_connection(home: Path, address: str) -> None:
    """Flower's CLI reads SuperLink connections from $FLWR_HOME/config.toml."""
    (home / "config.toml").write_text(f"""[superlink]
default = "danlu"

[superlink.danlu]
address = {toml_value(address)}
insecure = true
""", encoding="utf-8")


def submit(fed: Any, superlink: str, runs_dir: Path | None, say: Callable[[str], None]) -> Path:
    """Run the federation on the SuperLink and wait for its run folder to be done."""
    import json

    from danlu.runs.files import read_json
    from danlu.runs.folder import RunFolder

    if not fed.run_dir:  # named here: the ServerApp runs in the SuperLink's process and writes it
        fed.run_dir = str(_fresh_run_path(json.loads(fed.recipe_json)["name"], runs_dir))
    flwr = Path(sys.executable).with_name("flwr")
    with tempfile.TemporaryDirectory(prefix="danlu-federate-") as tmp:
        app, home = Path(tmp) / "app", Path(tmp) / "flwr-home"
        app.mkdir()
        home.mkdir()
        write_app(app, fed.run_config())
        write_connection(home, superlink)
        say(f"submitting to the SuperLink at {superlink}; the run folder will be {fed.run_dir}")
        env = {**os.environ, "FLWR_HOME": str(home)}
        proc = subprocess.run([str(flwr), "run", str(app), "danlu", "--stream"], env=env, check=False)
    run = RunFolder(Path(fed.run_dir))
    status = read_json(run.path / "status.json") if (run.path / "status.json").exists() else {}
    if proc.returncode != 0 or status.get("status") != "done":
        raise DanluError(f"the federation on {superlink} did not finish (flwr run exit {proc.returncode}, run "
                         f"status {status.get('status', 'not started')}): {status.get('error', '')}".rstrip(": "),
                         hint="see the SuperLink's and SuperNodes' logs; each SuperNode needs danlu installed and "
                              '--node-config "partition-id=I num-partitions=K"')
    return run.path


def _fresh_run_path(name: str, runs_dir: Path | None) -> Path:
    root = Path(runs_dir or "runs").resolve()
    return root / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-federated"
