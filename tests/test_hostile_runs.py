"""Issue 28: run folders as an attacker hands them over. Every run file goes through danlu/runs/files.py:
regular files only, no link out of the run folder, a bound per kind; a hostile run is "damaged (reason)"
in listings and exit 2 elsewhere. Nothing here trains; each test is bounded by an alarm, so a FIFO that
hangs a reader fails the test instead of hanging the suite."""

from __future__ import annotations

import json
import os
import re
import signal
from argparse import Namespace
from contextlib import contextmanager
from pathlib import Path

import pytest

from danlu.errors import DanluError, RunError
from danlu.runs import files
from tests.hostile import fake_run, hostile_runs


@contextmanager
def within(seconds: int):
    """Fail (not hang) when the body takes longer than ``seconds``."""
    def stop(*_):
        raise TimeoutError(f"took more than {seconds} s: a read blocked or ran away")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_reader_takes_regular_files_inside_the_folder_within_their_bound(tmp_path):
    run = fake_run(tmp_path, "r")
    assert files.read_json(run / "status.json")["status"] == "done"
    os.mkfifo(run / "fifo.json")
    (run / "zero.json").symlink_to("/dev/zero")
    (run / "out.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text("{}")
    with (run / "status.json").open("r+b") as f:
        f.truncate(files.LIMITS["status.json"] + 1)
    with within(10):
        with pytest.raises(RunError, match=r"not a regular file \(a FIFO\)"):
            files.read_json(run / "fifo.json")
        with pytest.raises(RunError, match="a link out of the run folder"):
            files.read_json(run / "zero.json")
        with pytest.raises(RunError, match=r"not a regular file \(a character device\)"):
            files.read_bytes("/dev/zero")  # no folder given: still no device
        with pytest.raises(RunError, match="a link out of the run folder"):
            files.read_json(run / "out.json")
        with pytest.raises(RunError, match="larger than 1 MiB, the bound for status.json files"):
            files.read_json(run / "status.json")


def test_metrics_are_read_a_block_at_a_time_and_bounded(tmp_path):
    from danlu.runs.store import metrics_history

    run = fake_run(tmp_path, "r")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i}) + "\n" for i in range(1, 3001))
                                       + '{"epoch": 3001, "tra')  # torn last line: left out
    assert [r["epoch"] for r in metrics_history(run)] == list(range(1, 3001))
    with (run / "metrics.jsonl").open("r+b") as f:
        f.truncate(files.LIMITS["metrics.jsonl"] + 1)  # sparse
    with within(10), pytest.raises(RunError, match="larger than 32 MiB"):
        metrics_history(run)


def test_danlu_runs_lists_hostile_runs_as_damaged_and_keeps_the_others(tmp_path, cli):
    root = tmp_path / "runs"
    runs = hostile_runs(root)
    with within(30):
        code, out, err = cli("runs")
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "damaged" not in lines[runs["healthy"].name]
    for what in ("status -> /dev/zero", "status FIFO", "report 200 MB", "recipe FIFO", "recipe -> /etc/passwd"):
        assert re.search(r"damaged\s+\(", lines[runs[what].name]), (what, out)
    assert "a link out of the run folder" in lines[runs["status -> /dev/zero"].name]
    assert "FIFO" in lines[runs["status FIFO"].name]
    assert "the bound for json files" in lines[runs["report 200 MB"].name]
    with within(30):
        code, out, err = cli("runs", "--json")
    assert code == 0
    rows = {r["run"]: r for r in json.loads(out)}
    assert rows[runs["status FIFO"].name]["status"] == "damaged"


@pytest.mark.parametrize("as_json", [True, False])
@pytest.mark.parametrize("what", ["recipe FIFO", "alias bomb", "recipe -> /etc/passwd", "status -> /dev/zero"])
def test_runs_show_of_a_hostile_run_exits_2(tmp_path, cli, what, as_json):
    runs = hostile_runs(tmp_path / "runs")
    with within(30):
        code, out, err = cli("runs", "show", runs[what].name, *(["--json"] if as_json else []))
    assert code == 2, (what, out, err)
    assert "damaged" in err and "internal error" not in err
    assert "root:" not in out + err  # /etc/passwd never shown


def test_run_folder_names_are_escaped_like_class_names(tmp_path, cli):
    root = tmp_path / "runs"
    for name in ("20260101-000000-a\nforged done accuracy 1.0", "20260101-000001-\x1b[2Jclear",
                 "20260101-000002-\u202eevil"):
        fake_run(root, name)
    code, out, err = cli("runs")
    assert code == 0, err
    assert "\x1b" not in out and "\u202e" not in out and "forged" not in out.split("\n")[1][:20]
    assert "\\x1b[2Jclear" in out and "\\u202e" in out and "a\\nforged" in out
    assert len(out.strip().splitlines()) == 3


@pytest.mark.parametrize("args, message", [
    (("runs", "show", "x" * 5000), "too long"),
    (("tune", "digits-mlp", "--study", "s" * 300), "too long"),
    (("tune", "digits-mlp", "--study", "bad\x1b[2Jname"), "not a folder name"),
    (("tune", "digits-mlp", "--study", "tab\there"), "not a folder name"),
    (("tune", "show", "y" * 300), "too long"),
])
def test_over_long_and_control_character_names_exit_2(cli, args, message):
    code, out, err = cli(*args)
    assert code == 2, err
    assert message in err and "internal error" not in err and "\x1b" not in err


def test_in_memory_sqlite_storage_is_refused(cli):
    for url in ("sqlite:///:memory:", "sqlite://", "sqlite+pysqlite:///:memory:?cache=shared"):
        code, out, err = cli("tune", "digits-mlp", "--trials", "1", "--storage", url)
        assert code == 2 and "in-memory database" in err and "Traceback" not in err, err


def test_api_key_file_must_be_a_small_regular_file(tmp_path):
    from danlu.cli.serve import _api_key

    os.mkfifo(tmp_path / "fifo")
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(1 << 20)
    (tmp_path / "ok").write_text("s3cret\n")
    with within(10):
        for path, message in ((tmp_path / "fifo", "FIFO"), ("/dev/zero", "character device"),
                              (big, "larger than 64 KiB")):
            with pytest.raises(DanluError, match=message):
                _api_key(Namespace(api_key_file=str(path), api_key=None))
    assert _api_key(Namespace(api_key_file=str(tmp_path / "ok"), api_key=None)) == "s3cret"


def test_fifo_and_device_given_as_images_are_named(tmp_path):
    from danlu.errors import DataError
    from danlu.predictor import expand_image_inputs

    os.mkfifo(tmp_path / "pipe.png")
    with within(10):
        with pytest.raises(DataError, match=r"not an image file but a named pipe \(FIFO\)"):
            expand_image_inputs([str(tmp_path / "pipe.png")])
        with pytest.raises(DataError, match="not an image file but a device"):
            expand_image_inputs(["/dev/zero"])


def test_output_paths_are_checked_before_any_work(tmp_path):
    from danlu.cli.checks import output_file, output_folder

    (tmp_path / "file").write_text("x")
    for path, check, message in ((tmp_path, output_file, "is a folder"),
                                 ("/proc/version", output_file, "not a regular"),
                                 (tmp_path / "file", output_folder, "is not a folder"),
                                 ("/proc/x", output_folder, "in /proc"), ("a" * 300, output_file, "too long")):
        with pytest.raises(DanluError, match=message):
            check(path, "--out")
    assert output_file(tmp_path / "new" / "c.png", "--png") == tmp_path / "new" / "c.png"


def test_texts_are_cut_before_tokenizing(tmp_path):
    from danlu.cli.inputs import MAX_LINE_CHARS, capped_lines, file_bytes, read_lines
    from danlu.data.text.dataset import TextEncoder

    enc = TextEncoder("word", 16)
    [tokens] = enc.tokens(["word " * 4_000_000])  # 20 MB: tokenized whole this would be 4M tokens
    assert len(tokens) <= enc.max_chars // 5 + 1
    lines = read_lines(b"x" * (MAX_LINE_CHARS + 10) + b"\r\nsecond\n", Path("in.txt"))
    assert [len(line) for line in lines] == [MAX_LINE_CHARS, 6]
    long = tmp_path / "long.txt"
    long.write_bytes("é".encode() * (3 * MAX_LINE_CHARS) + b"\nsecond\n")  # 6 MB in one line
    raw = file_bytes(long)  # read a line at a time, each cut at a character boundary
    assert len(raw) <= 4 * MAX_LINE_CHARS + 8
    assert [len(line) for line in read_lines(raw, long)] == [MAX_LINE_CHARS, 6]
    with long.open("rb") as stdin:  # `danlu predict RUN -` reads stdin the same way, a line at a time
        assert capped_lines(stdin) == raw


def test_unbounded_settings_are_refused_with_their_bound():
    from danlu.explanations.views import MAX_TOP_LOSSES, top_losses
    from danlu.recipe import load_recipe

    with pytest.raises(DanluError, match="less than or equal to 512"):
        load_recipe("digits-mlp", ["train.threads=100000"])
    with pytest.raises(DanluError, match=f"between 1 and {MAX_TOP_LOSSES}"):
        top_losses(None, 1_000_000_000, None, None)
