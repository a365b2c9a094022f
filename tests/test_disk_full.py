"""A full disk while training is the user's to fix: exit 2 saying where space ran out and how to go on,
and a resume hint that never claims a checkpoint was deleted when none was ever written."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from danlu.runs import files as runs
from tests.conftest import last_json

ARGS = ["digits-mlp", "train.epochs=3", "model.hidden=[64]", "--quiet"]


def _fill_disk_at(monkeypatch, name: str, nth: int = 1) -> list[int]:
    """From the ``nth`` time a file called ``name`` is synced on, the disk is full (ENOSPC)."""
    real_fsync, seen = os.fsync, [0]

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if f".{name}." in target:  # atomic_file's temp file for it
            seen[0] += 1
            if seen[0] >= nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(runs.os, "fsync", fsync)
    return seen


pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")


def test_disk_full_before_the_first_checkpoint(cli, tmp_path, monkeypatch):
    _fill_disk_at(monkeypatch, "last.safetensors")
    code, _, err = cli("train", *ARGS)
    assert code == 2, err
    assert "internal error" not in err
    assert "no space left on the disk holding" in err and "last.safetensors" in err
    run = next((tmp_path / "runs").iterdir())
    assert f"danlu train --resume {run}" in err and "df -h" in err
    assert not list(run.glob("checkpoints/.last*"))  # the temp file is gone
    monkeypatch.undo()
    code, _, err = cli("train", "--resume", str(run))
    assert code == 2
    assert "deleted" not in err and "before its first checkpoint was written" in err


def test_disk_full_later_resumes_to_the_end(cli, tmp_path, monkeypatch):
    _fill_disk_at(monkeypatch, "last.safetensors", nth=2)  # epoch 1's checkpoint is written, epoch 2's is not
    code, _, err = cli("train", *ARGS)
    assert code == 2 and "no space left" in err, err
    run = next((tmp_path / "runs").iterdir())
    monkeypatch.undo()
    code, out, err = cli("train", "--resume", str(run), "--json")
    assert code == 0, err
    assert Path(last_json(out)["run"]) == run
    assert (run / "report.json").exists()


def test_a_failed_append_is_a_disk_full_error_too(cli, tmp_path, monkeypatch):
    """metrics.jsonl is appended, not written atomically: the CLI maps its ENOSPC all the same."""
    real_open = Path.open

    def full_open(self, mode="r", *args, **kwargs):
        if self.name == "metrics.jsonl" and "a" in mode:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_open)
    code, _, err = cli("train", *ARGS)
    assert code == 2, err
    assert "quota exceeded" in err and "metrics.jsonl" in err and "--resume" in err


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MiB file system (tmpfs), where this machine lets us mount one."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk(tiny_disk, capsys):
    from danlu.cli.dispatch import main

    # ~300,000 weights: model.safetensors (1.2 MB) fits, the checkpoint with Adam's moments does not
    code = main(["train", "digits-mlp", "train.epochs=2", "model.hidden=[512,512]", "--quiet",
                 "--runs-dir", str(tiny_disk / "runs")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "no space left" in err and str(tiny_disk) in err and "--resume" in err
