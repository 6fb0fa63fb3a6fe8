"""glibc's allocator set up for training on a CPU: freed pages stay in the process.

A training step allocates and frees the same buffers every step (activations, the output
layer's chunks of logits, gradients). By default glibc gives large ones back to the kernel: a
chunk above the mmap threshold is unmapped when freed, and the heap's free top is trimmed above
the trim threshold. The next step then faults the same pages in again, each one zeroed by the
kernel: 1,800-2,900 page faults a step for the quickstart proxy, and one 4 MB chunk of logits
took 3 ms to compute instead of 2. Raising both thresholds, and the heap's top pad, once keeps
the pages for the next step. A process then keeps up to `TRIM_THRESHOLD` of freed memory it
would otherwise have returned; measured, the peak memory of training one quickstart proxy and
of the whole quickstart did not change.

Only on Linux with glibc, and never over a user's own `MALLOC_MMAP_THRESHOLD_`,
`MALLOC_TRIM_THRESHOLD_` or `MALLOC_TOP_PAD_` (glibc's environment settings).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
"""The largest glibc accepts on a 64-bit machine: chunks up to it come from the heap."""
TRIM_THRESHOLD = 128 * 2**20
TOP_PAD = 64 * 2**20

_set = False


def keep_freed_pages() -> bool:
    """Raise glibc's mmap and trim thresholds and top pad for this process (once); True when
    they are set (now or before), False where there is no glibc or the user set them."""
    global _set
    if _set:
        return True
    if not sys.platform.startswith("linux"):
        return False
    user = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
    if any(k in os.environ for k in user):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _set = all(
        mallopt(option, value)
        for option, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_TOP_PAD, TOP_PAD),
        )
    )
    return _set
