"""Host memory of jobs that compute on the CPU: freed memory reused instead of mapped afresh.

XLA:CPU gives every execution of a program one temporary buffer for its intermediate arrays,
allocated when the execution starts and freed when it ends: 930 MB for the DDPM CIFAR-10 train
step at batch 8. glibc's malloc serves a request that large with a new ``mmap`` and returns it
with ``munmap``, so each step the kernel hands out and zeroes about 0.9 GB of fresh pages
again: 227,000 page faults and 0.6 s of system CPU time per 2.5 s step on the measured 2-core
machine (benchmarks/README.md, "Host memory on the CPU").

`configure_cpu_process` stops that in two parts, both needed:

- `reuse_freed_memory`: glibc's malloc takes no memory with ``mmap`` and never trims its heap
  (``mallopt``), so a freed block stays in the heap and serves the next request;
- ``jax_cpu_enable_async_dispatch=False``: a one-device program runs on the Python thread that
  calls it, whose allocations come from glibc's main heap. Run asynchronously it runs on a
  worker thread, whose allocations come from that thread's own arena, and such an arena maps
  any request larger than its 64 MB heap with ``mmap`` whatever ``mallopt`` says. (Programs
  over several devices still run on worker threads.)

The cost is resident memory: the heap keeps its high-water mark (after two steps the BigGAN
CIFAR-10 step holds 3.5 GB against 3.3 GB without).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util

import jax

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def cpu_only() -> bool:
    """Whether this process's JAX can only compute on the CPU, known without starting a
    backend: ``jax_platforms`` names only ``cpu``, or no accelerator plugin is installed
    (no libtpu, no ``jax_plugins`` entry point or package)."""
    platforms = jax.config.jax_platforms
    if platforms:
        return all(p.strip() == "cpu" for p in platforms.split(","))
    if any(importlib.util.find_spec(name) for name in ("libtpu", "jax_plugins")):
        return False
    return not importlib.metadata.entry_points(group="jax_plugins")


def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has ``gnu_get_libc_version``), else None
    (e.g. on macOS)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def reuse_freed_memory() -> bool:
    """On glibc: no ``mmap`` and no trimming (``mallopt``); returns whether both were set
    (False with another C library)."""
    libc = glibc()
    return libc is not None and all(
        libc.mallopt(param, value) == 1
        for param, value in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)))


def configure_cpu_process() -> bool:
    """When the process computes on the CPU only (`cpu_only`): synchronous dispatch and
    `reuse_freed_memory` (module docstring). Call it before anything starts JAX's backend.
    Returns whether the process was configured."""
    if not cpu_only():
        return False
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return reuse_freed_memory()
