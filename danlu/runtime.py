"""Process-wide settings the CLI applies before heavy work starts."""

from __future__ import annotations

import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -3, -4, -8  # glibc's mallopt


def _mallopt(*settings: tuple[int, int]) -> bool:
    """glibc's ``mallopt`` for each (parameter, value), all of them tried; whether every one applied (False off
    Linux, and off glibc: musl has no mallopt)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return all([libc.mallopt(param, value) == 1 for param, value in settings])
    except (OSError, AttributeError):
        return False


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed blocks of up to 32 MB instead of returning them to the kernel.

    By default glibc serves each allocation of a few MB (one batch's activations of a conv layer) with a
    fresh mmap and unmaps it when freed, so every training step page-faults its activations in again:
    mnist-cnn trains 10-17 % faster here with this. Freed memory then stays with the process, which suits
    a training or serving process. A no-op off glibc. Returns whether it applied.
    """
    return _mallopt((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))


def allocate_big_blocks_from_heap() -> bool:
    """Serve big allocations from the heap too, never from a fresh mmap (glibc ``M_MMAP_MAX`` 0): for training.

    ``keep_freed_memory`` cannot raise the mmap threshold past 32 MB (glibc's cap), and a conv net's activations
    at a large batch are bigger: cifar10-fast's first stage at batch 1,024 is 252 MB, which glibc mapped and
    unmapped, and the kernel faulted in again, every step. Without mmap its fp32 step trained 1.31x faster (531
    vs 405 samples/s; sys 4.5 -> 0.65 CPU-s, 2.58 M -> 0.46 M page faults for 3,000 images). Not for the server,
    whose rare big decodes must go back to the kernel. A no-op off glibc. Returns whether it applied.
    """
    return _mallopt((_M_MMAP_MAX, 0))


def share_one_heap() -> bool:
    """Let every thread allocate from glibc's main heap (``M_ARENA_MAX`` 1) rather than a heap of its own.

    With a heap per thread, what a server's decode thread freed after a big image stayed resident (up to
    64 MB per thread: ``malloc_trim`` cannot shrink a thread heap's top past the trim threshold that
    ``keep_freed_memory`` raises); on the one main heap ``trim_freed_memory`` gives it all back. Call before
    threads start allocating. A no-op off glibc. Returns whether it applied.
    """
    return _mallopt((_M_ARENA_MAX, 1))


def trim_freed_memory() -> bool:
    """Hand the heap's free pages back to the kernel now (glibc ``malloc_trim``), whatever
    ``keep_freed_memory`` asked: for after a rare, big allocation, so the process returns to its baseline.
    A few ms on a heap of a few hundred MB. A no-op off glibc. Returns whether it ran."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False
