"""Atomic writes: every file is written under a hidden per-process name beside its final path and renamed into
place, so an error, Ctrl+C or kill -9 never leaves a half-written file under the final name."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import stat
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


def cache_dir(*parts: str) -> Path:
    """pdfgc's cache folder (not created): ``$PDFGC_CACHE``, else ``$XDG_CACHE_HOME/pdfgc``, else
    ``~/.cache/pdfgc``; `parts` name a sub-folder (``cache_dir("driving")``: the driving clips' measured meshes,
    `pdfgc.media.driving_cache`). The refiner's pair cache and the lips trainer's feature cache still choose their
    own folders."""
    root = os.environ.get("PDFGC_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pdfgc"
    return Path(root).joinpath(*parts)


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


def _check_writable_folder(out: Path) -> None:
    """InputError unless a file can be created beside `out` (the atomic write's temporary name): a read-only or
    virtual file system (/proc, /sys), a folder without write permission."""
    probe = temp_path(out)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        full = disk_full_error(out, e)
        if full is not None:
            raise full from None
        raise InputError(f"output {show_path(out)}: cannot write in {show_path(out.parent)} "
                         f"({os.strerror(e.errno or 0).lower()})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_path(output: str | os.PathLike, inputs=(), suffixes: tuple[str, ...] | None = None) -> Path:
    """The one check that an output path is safe to write: its folder exists, it is not a folder, it has one of
    `suffixes` (when given), and it is none of `inputs` (paths; None and non-path values such as arrays or the
    words 'still'/'off' are skipped), compared after resolving links, and as the same file on disk (hard links).
    Writing is atomic (rename over the target), so an output that is an input would replace the user's only copy
    of it. Returns the path; raises InputError naming the problem."""
    out = Path(output)
    name = show_path(out)
    if suffixes and out.suffix.lower() not in suffixes:
        raise InputError(f"output {name}: only {' / '.join(suffixes)} output is supported")
    try:
        os.stat(out)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"output {name}: a symbolic link loop (the link points back at itself)") from None
    if out.is_dir():
        raise InputError(f"output {name}: is a folder")
    if not out.parent.is_dir():
        raise InputError(f"output {name}: folder {show_path(out.parent)} does not exist")
    _check_writable_folder(out)
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


# ---- reading the user's files: one place that turns a path into a readable file or one clear error ---------------

def show_path(path: str | os.PathLike) -> str:
    """A path as it goes into a one-line message: control characters (a newline in a file name would split the
    `pdfgc: error:` line) are written as escapes, the rest as typed."""
    text = os.fspath(path)
    return text if text.isprintable() else text.encode("unicode_escape", "backslashreplace").decode("ascii")


def input_file(path: str | os.PathLike, what: str | None, kind: str = "a file", allow_empty: bool = False,
               label: str | None = None) -> Path:
    """`path` as a readable regular file, else InputError naming it and the actual problem: missing, a symlink
    loop or dangling link, a folder, a device or FIFO (their size says nothing and reading one may never end),
    unreadable, or empty. `what` names the role ("pose curve file"), `kind` what was expected; `label` replaces
    the "what path" that starts each message."""
    p = Path(path)
    name = label if label is not None else f"{what} {show_path(p)}" if what else show_path(p)
    try:
        st = os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{name}: a symbolic link loop (the link points back at itself)") from None
        if e.errno == errno.ENOENT and os.path.islink(p):
            raise InputError(f"{name}: a broken symbolic link (its target does not exist)") from None
        if e.errno == errno.ENOENT:
            raise InputError(f"{name}: no such file") from None
        if e.errno == errno.ENOTDIR:
            raise InputError(f"{name}: no such file (a part of the path is not a folder)") from None
        if e.errno == errno.ENAMETOOLONG:
            raise InputError(f"{show_path(str(p)[:80])}...: the file name is too long") from None
        raise InputError(f"{name}: cannot be read ({os.strerror(e.errno or 0).lower()})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{name}: is a directory, not {kind}")
    if not stat.S_ISREG(st.st_mode):
        sort = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else \
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else \
            "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
        raise InputError(f"{name}: is {sort}, not {kind}; give a regular file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{name}: permission denied (the file is not readable)")
    if st.st_size == 0 and not allow_empty:
        raise InputError(f"{name}: file is empty (0 bytes)")
    return p


def read_user_file(path: str | os.PathLike, what: str, max_bytes: int, kind: str = "a file",
                   why: str = "") -> bytes:
    """The bytes of a file the user handed over (curves, keyframe lists, control files), after `input_file`'s
    checks and a size bound checked BEFORE reading: a file over `max_bytes` is refused at once, with `why` (what
    the bound is derived from) in the message. Never reads more than max_bytes + 1 even if the file grows."""
    p = input_file(path, what, kind)
    size = p.stat().st_size
    if size > max_bytes:
        raise InputError(f"{what} {show_path(p)}: {_size(size)} is more than the {_size(max_bytes)} such a file "
                         f"can need{' (' + why + ')' if why else ''}")
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise InputError(f"{what} {show_path(p)}: cannot be read ({os.strerror(e.errno or 0).lower()})") from None
    if len(data) > max_bytes:
        raise InputError(f"{what} {show_path(p)}: grew past {_size(max_bytes)} while being read")
    return data


def read_user_text(path: str | os.PathLike, what: str, max_bytes: int, kind: str = "a text file",
                   why: str = "") -> str:
    """`read_user_file` decoded as UTF-8 (a BOM is dropped); binary data is one clear error."""
    data = read_user_file(path, what, max_bytes, kind, why)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} {show_path(path)}: not UTF-8 text (byte {e.start}): is it {kind}?") from None


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} bytes"
