"""Atomic writes: every file is written under a hidden per-process name beside its final path and renamed into
place, so an error, Ctrl+C or kill -9 never leaves a half-written file under the final name."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError


def temp_path(path: str | os.PathLike) -> Path:
    """A temporary name for `path`: hidden, unique per process and call (threads writing the same file do not
    collide), same suffix (cv2 and numpy pick the format from it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


# a full disk or quota is the user's to fix: one error line, not a traceback
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full_error(path: str | os.PathLike | None, exc: BaseException):
    """The InputError for a write of `path` (None: unknown) that failed with ENOSPC/EDQUOT/EFBIG, else None."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_FULL:
        return None
    where = f"cannot write {path}: {os.strerror(exc.errno).lower()} in {Path(path).parent}" if path else \
        f"cannot write: {os.strerror(exc.errno).lower()}"
    return InputError(f"{where} (nothing was written; free some space and run again)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `path` when the block ends without error, else is removed."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        full = disk_full_error(path, e)
        if full is None:
            raise
        raise full from None
    finally:
        tmp.unlink(missing_ok=True)


def process_start_time() -> float:
    """This process's start (epoch seconds): from /proc on Linux, else when this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


_IMPORTED = time.time()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_temps(path: str | os.PathLike, log: logging.Logger | None = None) -> list[Path]:
    """Remove the temporary files of `path` (`temp_path`'s and the mp4 writer's names) that runs killed by
    kill -9 or a power cut left behind: those last written before this process started, by a process that is
    gone. One whose writer is still running is reported, not touched. Returns the removed paths."""
    path = Path(path)
    log = log or logging.getLogger("pdfgc")
    names = "|".join(re.escape(n) for n in {path.name, path.stem})
    pattern = re.compile(rf"^\.(?:{names})\.tmp-(?:(\d+)-)?[0-9a-f]{{8}}{re.escape(path.suffix)}$")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    start, removed = process_start_time(), []
    for e in entries:
        m = pattern.match(e.name)
        if m is None:
            continue
        try:
            if e.stat(follow_symlinks=False).st_mtime >= start:
                continue  # written since this process started: maybe another run's, working now
            pid = int(m.group(1)) if m.group(1) else None
            if pid is not None and pid != os.getpid() and _alive(pid):
                log.warning("%s: a temporary file of process %d, which is still running (left alone)", e.path, pid)
                continue
            os.unlink(e.path)
        except OSError:
            continue
        removed.append(Path(e.path))
        log.warning("removed %s, left by an interrupted run", e.path)
    return removed


def write_atomic(path: str | os.PathLike, data: str | bytes, fsync: bool = False) -> Path:
    """Write text (UTF-8) or bytes to `path` atomically; `fsync` also flushes it to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return Path(path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(output: str | os.PathLike, inputs=(), suffixes: tuple[str, ...] | None = None) -> Path:
    """The one check that an output path is safe to write: its folder exists, it is not a folder, it has one of
    `suffixes` (when given), and it is none of `inputs` (paths; None and non-path values such as arrays or the
    words 'still'/'off' are skipped), compared after resolving links, and as the same file on disk (hard links).
    Writing is atomic (rename over the target), so an output that is an input would replace the user's only copy
    of it. Returns the path; raises InputError naming the problem."""
    out = Path(output)
    if suffixes and out.suffix.lower() not in suffixes:
        raise InputError(f"output {out}: only {' / '.join(suffixes)} output is supported")
    if out.is_dir():
        raise InputError(f"output {out}: is a folder")
    if not out.parent.is_dir():
        raise InputError(f"output {out}: folder {out.parent} does not exist")
    target = out.resolve()  # through symlinks, either side
    for src in inputs:
        if not isinstance(src, (str, os.PathLike)) or not str(src):
            continue
        p = Path(src)
        if not p.exists():
            continue
        if p.resolve() == target or _same_file(p, out):
            raise InputError(f"output {out} is also an input ({src}): writing it would replace that file; "
                             "choose another output name")
    return out
