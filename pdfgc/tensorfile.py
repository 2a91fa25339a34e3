"""The one reader of safetensors files (weights, parameters, checkpoints, the mouth bank): a path -> its tensors and
metadata, or a lazy handle, and one `CheckpointError` naming the file and what is wrong with it: missing, a folder,
a PyTorch checkpoint handed in (said how such files are loaded), not a safetensors file (damaged, truncated header,
another format), cut short after its header, or of another format than the caller expects."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import CheckpointError

PYTORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
# how the only PyTorch checkpoints pdfgc reads are loaded (safetensors is the format of everything pdfgc writes)
PYTORCH_HINT = ("the official .pth files are loaded from their folder with --official-checkpoints DIR, or converted "
                "once with `pdfgc convert-official DIR -o FILE`")


def torch_magic(path: str | os.PathLike) -> bool:
    """True when the file starts as torch.save writes: a zip archive (PK\\x03\\x04) or a pickle (protocol 2+)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def looks_like_pytorch(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in PYTORCH_SUFFIXES or torch_magic(path)


def pytorch_hint(path: str | os.PathLike, how: str = PYTORCH_HINT) -> str:
    return f"{Path(path).name} looks like a PyTorch checkpoint, not a .safetensors file: {how}"


def unreadable(path: str | os.PathLike, exc: BaseException, how: str = PYTORCH_HINT) -> CheckpointError:
    """The error for a file safetensors cannot read; a PyTorch .pth (a zip or a pickle: safetensors reads its first
    bytes as a huge header length) is told how such files are loaded (`how`)."""
    msg = str(exc)
    if looks_like_pytorch(path):
        msg += "; " + pytorch_hint(path, how)
    else:
        msg += "; the file is not a safetensors file (damaged, truncated or another format)"
    return CheckpointError(f"{path}: cannot read safetensors file ({msg})")


def _check_path(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder, not a {what}")
    if not p.is_file():
        raise CheckpointError(f"{p}: {what} not found")
    return p


def _check_format(path: Path, meta: dict, expect_format: str | tuple[str, ...] | None, what: str) -> None:
    if expect_format is None:
        return
    allowed = (expect_format,) if isinstance(expect_format, str) else tuple(expect_format)
    if meta.get("format") not in allowed:
        raise CheckpointError(f"{path}: not a {what} (format {meta.get('format')!r}, expected "
                              f"{' or '.join(repr(a) for a in allowed)})")


class TensorFile:
    """An open safetensors file: `metadata`, `keys()`, `shape(key)` (header only), `get_tensor(key)`. A file cut
    short after its header fails on the read, as the same CheckpointError naming the file."""

    def __init__(self, path: Path, handle, how: str):
        self.path, self._f, self._how = path, handle, how
        self.metadata: dict = dict(handle.metadata() or {})

    def keys(self) -> list[str]:
        return list(self._f.keys())

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._f.get_slice(key).get_shape())

    def get_tensor(self, key: str):
        try:
            return self._f.get_tensor(key)
        except Exception as e:  # safetensors raises its own error types for data cut short
            raise unreadable(self.path, e, self._how) from None

    def tensors(self) -> dict:
        return {k: self.get_tensor(k) for k in self.keys()}


@contextlib.contextmanager
def open_tensors(path: str | os.PathLike, what: str = "safetensors file", framework: str = "pt",
                 expect_format: str | tuple[str, ...] | None = None,
                 how: str = PYTORCH_HINT) -> Iterator[TensorFile]:
    """A lazy handle on a safetensors file (header read, tensors on demand). `what` names the file's role in
    messages ("meshwarp parameters file"); `expect_format`: the metadata `format` entry (or entries) it must have;
    `framework`: "pt" (torch tensors) or "np"/"numpy"; `how`: how a PyTorch checkpoint handed in is loaded."""
    from safetensors import safe_open

    p = _check_path(path, what)
    try:
        handle = safe_open(str(p), framework=framework, device="cpu")
    except Exception as e:  # safetensors raises its own error types for a truncated or corrupt header
        raise unreadable(p, e, how) from None
    with handle as f:
        tf = TensorFile(p, f, how)
        _check_format(p, tf.metadata, expect_format, what)
        yield tf


def read_tensors(path: str | os.PathLike, what: str = "safetensors file", framework: str = "pt",
                 expect_format: str | tuple[str, ...] | None = None,
                 how: str = PYTORCH_HINT) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file; CheckpointError naming the file (see `open_tensors`)."""
    with open_tensors(path, what, framework, expect_format, how) as f:
        return f.tensors(), f.metadata


def read_metadata(path: str | os.PathLike, what: str = "safetensors file",
                  how: str = PYTORCH_HINT) -> dict:
    """The metadata of a safetensors file, from its header only."""
    with open_tensors(path, what, "np", how=how) as f:
        return f.metadata
