"""Device, precision and thread choices, made deliberately (small ops on a busy 2-core CPU are 10-100x slower
with the wrong thread count) and the one glibc setting that keeps the generator's large temporaries off mmap."""
from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass

import torch

from .errors import InputError

PRECISIONS = ("exact", "fast")


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 / AMX: oneDNN runs bf16 convolutions natively."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - older torch
        return False


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device '{device}' requested but CUDA is not available")
    return d


def set_threads(threads: int | None) -> int:
    """Use every core unless told otherwise; the count is printed by the CLI."""
    n = threads or len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (threads or os.cpu_count())
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()


_MALLOC_TUNED = False


def tune_malloc() -> None:
    """Keep freed 25 MB activations in the heap instead of unmapping them: the official code spent about as much
    time in the kernel (page faults) as computing. glibc only; a no-op elsewhere."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: glibc's maximum on 64-bit
        libc.mallopt(-1, 512 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


@dataclass
class Precision:
    name: str
    device: torch.device

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        if self.name == "exact":
            return None
        if self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_bf16() else None

    def autocast(self):
        dt = self.autocast_dtype
        if dt is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dt)
