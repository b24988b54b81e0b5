"""How the server process takes memory from the C allocator for request bodies.

Every piece of a body the network hands over (up to 256 KiB) is a new bytes object, made and
freed within microseconds. glibc's allocator serves pieces that large from fresh ``mmap``
regions, or from the top of the heap, which it hands back to the kernel as soon as the free
space there passes its trim threshold; either way the next piece lands on pages the kernel
must fault in and zero again: ~225,000 page faults and 0.6-0.9 s of kernel CPU per GiB
uploaded, measured on a 2-vCPU VM — as much as hashing the bytes. Fixed thresholds keep freed
memory for reuse instead (the process holds at most ``TRIM`` more after a large transfer).
``TRIM`` stays small: at 64 MiB the freed 8 MiB blocks of a download stayed with the server,
152 MB after pulling one blob against 112 MB now (and 111 MB before any of this); the body
pieces of an upload churn well below it.
"""

from __future__ import annotations

import ctypes
import sys

MMAP_FROM = 16 << 20  # requests smaller than this come from the heap
TRIM = 16 << 20  # free heap top kept before any is handed back (see below)
_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Set the allocator's thresholds (glibc only); True if they were set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_FROM)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM))
