"""``danlu train RECIPE --nproc N``: N worker processes on this machine through torch.distributed.run.

The launcher is torchrun's own (elastic_launch, one node, rendezvous on 127.0.0.1); each worker runs the
same ``danlu train`` without ``--nproc`` and finds its rank in the environment (danlu/training/distributed.py).
When a worker dies the agent stops the others at once; this turns its report into a message naming the
rank and the command that resumes the run.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path

from danlu.errors import DanluError, RunError


def worker_argv(a: argparse.Namespace) -> list[str]:
    """The ``danlu train`` arguments each worker gets: the launcher's, without ``--nproc``."""
    argv = ["train"] + ([a.recipe] if a.recipe and not a.resume else []) + list(a.overrides)
    for flag, value in (("--resume", a.resume), ("--runs-dir", a.runs_dir), ("--data-dir", a.data_dir)):
        if value is not None:
            argv += [flag, str(value)]
    argv += [flag for flag, on in (("--json", a.json), ("--quiet", a.quiet), ("--debug", getattr(a, "debug", False)))
             if on]
    return argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(a: argparse.Namespace) -> int:
    """Run the training in ``a.nproc`` processes; returns the exit code (0, or 2 after a worker's own error)."""
    n = a.nproc
    if n < 1:
        raise DanluError(f"--nproc must be at least 1, got {n}")
    if "WORLD_SIZE" in os.environ:
        raise DanluError("--nproc starts its own processes, but this already is one of a distributed launch",
                         hint="under torchrun or srun leave --nproc out")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    env_backup = dict(os.environ)
    run_file = Path(tempfile.mkdtemp(prefix="danlu-launch-")) / "run"
    os.environ["DANLU_DIST_RUN_FILE"] = str(run_file)
    if Path("/sys/class/net/lo").exists():  # one machine: gloo talks over loopback only
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default for several processes per machine
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0,
                          monitor_interval=0.5, local_addr="127.0.0.1", start_method="spawn")
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "danlu", *worker_argv(a))
        return 0
    except SignalException as e:  # Ctrl-C or SIGTERM to the launcher: the agent stopped the workers
        raise KeyboardInterrupt from e
    except ChildFailedError as e:
        # a killed rank's peers fail their next collective and may exit (code 2) before the agent sees the
        # kill: name the process that died of something other than its own DanluError, when there is one
        died = {r: f for r, f in e.failures.items() if f.exitcode != 2}
        if not died:  # every failure is a worker's own DanluError, already printed by it
            return 2
        rank = min(died, key=lambda r: (died[r].exitcode >= 0, r))  # a signal death first
        failure = died[rank]
        how = (f"killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}")
        run = a.resume or (run_file.read_text() if run_file.exists() else None)
        resume = (f"danlu train --resume {run} --nproc {n}" if run else
                  "it stopped before its run folder was made; start it again")
        raise RunError(f"process {rank} of {n} stopped ({how}); the others were stopped with it",
                       hint=f"continue from the last finished epoch: {resume}"
                            + (" (exit code 137 or SIGKILL is often out of memory)" if how.endswith("KILL")
                               or failure.exitcode == 137 else "")) from None
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
        run_file.unlink(missing_ok=True)
        run_file.parent.rmdir()
