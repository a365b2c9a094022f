"""The speed-motivated pieces behave like what they replace: dropout mask, plot helpers, fast exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from danlu.models.layers import Dropout, keep_mask

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_keep_mask_drops_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([999, 1001]), p, torch.float32)  # numel not a multiple of 4
    dropped = (mask == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.003)
    zero, kept = mask.unique().tolist()
    assert zero == 0.0 and kept == pytest.approx(1 / (1 - p), rel=1e-4)
    assert mask.mean().item() == pytest.approx(1.0, abs=0.005)
    flat = (mask > 0).float().view(-1)
    for lag in (1, 2, 3, 4, 5):  # 4 masks share one int64: neighbours must still be independent
        r = torch.corrcoef(torch.stack([flat[:-lag], flat[lag:]]))[0, 1].item()
        assert abs(r) < 0.01, (lag, r)


def test_dropout_trains_like_torch_and_is_identity_in_eval():
    torch.manual_seed(0)
    d = Dropout(0.3)
    x = torch.randn(64, 50, requires_grad=True)
    y = d(x)
    y.sum().backward()
    kept = y != 0
    assert torch.allclose(y[kept], x.detach()[kept] / 0.7, rtol=1e-4)
    assert torch.allclose(x.grad, kept.float() / 0.7, rtol=1e-4)  # the gradient is the mask itself
    d.eval()
    assert d(x) is x or torch.equal(d(x), x)
    torch.manual_seed(1)
    a = Dropout(0.3).train()(torch.ones(10, 10))
    torch.manual_seed(1)
    b = Dropout(0.3).train()(torch.ones(10, 10))
    assert torch.equal(a, b)  # seeded: reproducible and resumable


def _python(code: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize("kill_helper", [False, True])
def test_plot_helpers_draw_every_figure_even_when_a_helper_dies(tmp_path, kill_helper):
    """Figures drawn by forked helpers; a helper killed mid-run only means the parent draws in line."""
    r = _python(f"""
        import os, signal, json
        from pathlib import Path
        import numpy as np
        from danlu.plots import worker as plot_worker
        plot_worker.start()
        pool = plot_worker._pool
        assert pool is not None
        if {kill_helper}:
            os.kill(pool.pid, signal.SIGKILL)
            os.waitpid(pool.pid, 0)
        history = [dict(epoch=e, train_loss=1 / e, val_loss=1.2 / e) for e in range(1, 4)]
        images = np.random.default_rng(0).integers(0, 255, (25, 1, 8, 8), dtype=np.uint8)
        out = Path("plots")
        plot_worker.draw("learning_curves", history, out / "lc.png")
        plot_worker.draw("confusion_matrix", [[3, 1], [0, 4]], ["a", "b"], out / "cm.png")
        plot_worker.draw("prediction_grid", images, ["a"] * 25, ["b"] * 25, out / "grid.png")
        plot_worker.finish()
        plot_worker.stop()
        print(json.dumps(sorted(p.name for p in out.iterdir())))
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == ["cm.png", "grid.png", "lc.png"]
    for name in ("cm.png", "grid.png", "lc.png"):
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG)


def test_helpers_can_be_turned_off_and_then_draw_in_line(tmp_path):
    r = _python("""
        from pathlib import Path
        from danlu.plots import worker as plot_worker
        plot_worker.start()
        assert plot_worker._pool is None
        plot_worker.draw("confusion_matrix", [[1, 0], [0, 1]], ["a", "b"], Path("cm.png"))
        assert Path("cm.png").exists()  # drawn before draw() returned
    """, tmp_path, env={"DANLU_PLOT_WORKER": "0"})
    assert r.returncode == 0, r.stderr


def test_cli_process_writes_report_and_plots_and_keeps_exit_codes(tmp_path):
    """The real entry point (helpers + exit without interpreter teardown) loses no output or file."""
    runs = tmp_path / "runs"
    ok = subprocess.run([sys.executable, "-m", "danlu", "train", "digits-mlp", "train.epochs=2", "--runs-dir",
                         str(runs), "--json", "--quiet"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout.strip().splitlines()[-1])
    run = Path(result["run"])
    assert json.loads((run / "report.json").read_text())["metrics"] == result["metrics"]
    for name in ("learning_curves.png", "confusion_test.png", "predictions_test.png"):
        assert (run / "plots" / name).read_bytes().startswith(PNG), name
    bad = subprocess.run([sys.executable, "-m", "danlu", "train", "no-such-recipe", "--runs-dir", str(runs)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "digits-mlp" in bad.stderr


_FAULTS = """
import resource, sys, torch
from danlu.runtime import allocate_big_blocks_from_heap, keep_freed_memory
keep_freed_memory()
if sys.argv[1] == "heap":
    assert allocate_big_blocks_from_heap()
for _ in range(12):  # "steps" to warm up: glibc settled on reusing the freed block after 1-6 of them here
    torch.ones(64 << 20).sum()  # a batch's activations above glibc's 32 MB mmap cap, freed after each "step"
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):
    torch.ones(64 << 20).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_big_blocks_from_the_heap_are_not_faulted_in_again_every_step():
    """Above 32 MB glibc mmaps each allocation and unmaps it when freed, so every training step faulted its
    big activations in again; with M_MMAP_MAX 0 (what danlu train sets) the freed block is reused."""
    import subprocess

    faults = {mode: int(subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("mmap", "heap")}
    pages = 6 * (256 << 20) // 4096
    assert faults["mmap"] > 0.8 * pages  # each 256 MB block faulted in afresh
    assert faults["heap"] < 0.2 * pages, faults
