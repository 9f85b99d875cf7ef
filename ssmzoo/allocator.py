"""Keeping freed memory in the process, so that CPU inference does not page-fault on every forward.

glibc's malloc hands large blocks back to the kernel when they are freed (``mmap``/``munmap`` above a
size threshold, trimming of the heap top), so every forward pass of a CNN or SSM on the CPU touches
fresh pages for its big activations: on this project's 2-core VM GroupMamba-T took 9,000-12,000 page
faults per 224x224 image (convnext_tiny 1,400-4,000), and a 512-channel depthwise conv at 56x56 ran
in 1.6 ms instead of 0.55 ms. Raising both thresholds keeps the freed blocks for reuse: no faults
after the first forward, GroupMamba-T ~9% faster there. It is what PyTorch's CPU tuning guide gets
from jemalloc/tcmalloc, without preloading a library; the cost is that the process keeps its peak
heap. The ``ssmzoo`` command applies it at start; ``SSMZOO_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 256 << 20   # blocks up to this size come from the heap and are reused
TRIM_THRESHOLD = 1 << 30     # the heap top is handed back only beyond this much free memory


def keep_freed_memory() -> bool:
    """Sets glibc malloc's mmap and trim thresholds for this process; True where that took effect.

    A no-op (False) off Linux, with another C library, or with ``SSMZOO_MALLOC_TUNING=0``."""
    if sys.platform != "linux" or os.environ.get("SSMZOO_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # glibc only (musl has no mallopt thresholds)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
