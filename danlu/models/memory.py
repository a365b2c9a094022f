"""Will the model fit? Its parameters counted on the meta device (shapes only, no memory) before it is
built, against the memory this process can still get.

``model.hidden: [1000000000]`` asks for 64 billion weights on digits: without this check the allocation
fails deep inside torch ("can't allocate", an internal error) or the OOM killer ends the process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from danlu.errors import DanluError

# float32 copies of every parameter held at the peak: inference keeps the model and the file's tensors
# while they are copied in; training keeps weights, gradients and the optimizer's two moments (Adam's)
COPIES = {"inference": 2, "training": 4}
BYTES_PER_VALUE = 4


def count_on_meta(builder: Callable[[], Any]) -> int:
    """Parameters and buffers of the module ``builder()`` makes, built on the meta device."""
    import torch

    try:
        with torch.device("meta"):
            model = builder()
    except (RuntimeError, TypeError, OverflowError, ValueError) as e:
        if "overflow" not in str(e).lower():
            raise
        raise DanluError("the model's layers are too large to even count (a tensor of more than 2**63 values)",
                         hint="use layer sizes of thousands, not billions") from None
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def available_memory() -> int:
    """Bytes this process can still allocate: the machine's available memory, or less under a cgroup limit."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap = Path(limit).read_text().strip()
            if cap != "max" and int(cap) < 1 << 60:
                found.append(max(0, int(cap) - int(Path(used).read_text().strip())))
        except (OSError, ValueError):
            continue
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return min(found) if found else 1 << 62  # nothing known: do not refuse


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**27 else f"{n / 2**20:,.1f} MiB"


def check_fits(name: str, parameters: int, training: bool) -> None:
    """A DanluError (exit 2) when ``parameters`` float32 values cannot fit in the memory left."""
    purpose = "training" if training else "inference"
    need = parameters * BYTES_PER_VALUE * COPIES[purpose]
    have = available_memory()
    if need > have:
        raise DanluError(f"model '{name}' would have {parameters:,} parameters: {purpose} needs about {gib(need)} "
                         f"of memory, {gib(have)} is available",
                         hint="make it smaller (model.hidden, model.channels, model.embed_dim; for text a smaller "
                              "vocabulary: data.max_vocab), or use a machine with more memory")
