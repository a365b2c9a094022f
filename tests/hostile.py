"""Hostile payloads of issue 28, generated (nothing checked in): image headers that declare huge sizes,
YAML alias bombs, run folders whose files are FIFOs, devices, links out or oversized. Shared by the tests
and ``benchmarks/attack.py``."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

RECIPE = "name: digits-mlp\nmodel:\n  name: mlp\ndata:\n  name: digits\n"


def gif_screen(side: int = 65535) -> bytes:
    """A 37-byte GIF whose logical screen is side x side, holding one 1x1 image."""
    return (b"GIF89a" + struct.pack("<HHBBB", side, side, 0, 0, 0)
            + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def ppm_header(side: int = 60000) -> bytes:
    return f"P6\n{side} {side}\n255\n".encode() + b"\x00" * 64


def jpeg_sof(side: int = 65500) -> bytes:
    """A real 8x8 JPEG whose SOF0 marker is rewritten to say side x side."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def float_tiff(side: int) -> bytes:
    """A float32 TIFF of side x side zeros, deflated: ~0.8 MB at 9000² for ~2 GB of decoding."""
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), dtype=np.float32)).save(buf, format="TIFF",
                                                                    compression="tiff_adobe_deflate")
    return buf.getvalue()


def alias_bomb_name(levels: int = 9) -> str:
    """A recipe.yaml whose ``name:`` line is an alias bomb of 10**levels strings (~430 bytes at 9)."""
    parts = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        parts.append(f"&a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    return f"name: [{', '.join(parts)}]\nmodel:\n  name: mlp\ndata:\n  name: digits\n"


def fake_run(root: Path, name: str, status: object = "done", recipe: str = RECIPE) -> Path:
    """A run folder with just what a listing reads: recipe.yaml and status.json."""
    run = root / name
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(recipe)
    if status is not None:
        (run / "status.json").write_text(json.dumps({"status": status, "epochs": 1}))
    return run


def hostile_runs(root: Path) -> dict[str, Path]:
    """One run per way a run file can be hostile; returns them by what is wrong."""
    runs = {"healthy": fake_run(root, "20260101-000000-healthy")}
    zero = fake_run(root, "20260101-000001-status-dev-zero", status=None)
    (zero / "status.json").symlink_to("/dev/zero")
    runs["status -> /dev/zero"] = zero
    fifo = fake_run(root, "20260101-000002-status-fifo", status=None)
    os.mkfifo(fifo / "status.json")
    runs["status FIFO"] = fifo
    recipe_fifo = root / "20260101-000003-recipe-fifo"
    recipe_fifo.mkdir()
    os.mkfifo(recipe_fifo / "recipe.yaml")
    (recipe_fifo / "status.json").write_text('{"status": "done"}')
    runs["recipe FIFO"] = recipe_fifo
    big = fake_run(root, "20260101-000004-big-report")
    with (big / "report.json").open("wb") as f:  # sparse: 200 MB declared, no disk used
        f.truncate(200 << 20)
    runs["report 200 MB"] = big
    runs["alias bomb"] = fake_run(root, "20260101-000005-alias-bomb", recipe=alias_bomb_name())
    leak = fake_run(root, "20260101-000006-recipe-link-out", recipe=RECIPE)
    (leak / "recipe.yaml").unlink()
    (leak / "recipe.yaml").symlink_to("/etc/passwd")
    runs["recipe -> /etc/passwd"] = leak
    return runs
