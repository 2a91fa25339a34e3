"""Uploads are decoded first in a child process, so no file can take the server down.

A native crash in a decoder (a segfault in FFmpeg, libswresample, an image library) cannot be caught in Python:
it ends the process. In `pdfgc ui` that process is the server of every session, and its temporary folder (all
sessions' uploads) would stay on disk. So each uploaded file is first decoded whole, by the same functions the
render uses (`decode_speech`, `iter_video_frames`, `load_image_rgb`), in a short-lived child process
(`python -m pdfgc.media.check KIND ROLE PATH`: it imports no torch, nor the UI). Decoding is deterministic, so a
file that decoded cleanly there decodes cleanly in the server; one that crashed or hung the child is refused with one
message and never opened by the server. Verdicts are cached per (file, size, mtime).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import InputError
from ..media.check import ERROR_PREFIX

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PROBE_TIMEOUT_S = 120.0  # a 50 MB, 60 s upload decodes in a few seconds; past this the decoder is stuck
_ERROR_PREFIX = ERROR_PREFIX


def probe_kind(path: Path, role: str) -> str:
    return "image" if role == "portrait" or path.suffix.lower() in IMAGE_SUFFIXES else "media"


_cache: dict[tuple, str | None] = {}
_cache_lock = threading.Lock()


def check_in_child(path: Path, role: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Decode `path` in a child process; InputError (naming the upload as `role`) when it is bad, crashed the
    decoder, or did not finish in `timeout_s`."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        known = _cache.get(key, ())
    if known == ():
        known = _run_child(path, role, probe_kind(path, role), timeout_s)
        with _cache_lock:
            _cache[key] = known
    if known is not None:
        raise InputError(known)


def child_command(kind: str, role: str, path: Path) -> list[str]:
    return [sys.executable, "-m", "pdfgc.media.check", kind, role, str(path)]


def _run_child(path: Path, role: str, kind: str, timeout_s: float) -> str | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = str(Path(__file__).resolve().parents[2])  # this checkout first: the child runs the same code
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        r = subprocess.run(child_command(kind, role, path), env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                           timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"{role} {path.name}: decoding did not finish in {timeout_s:g} s; the file was not used"
    if r.returncode == 0:
        return None
    lines = [ln[len(_ERROR_PREFIX):] for ln in r.stdout.splitlines() if ln.startswith(_ERROR_PREFIX)]
    if r.returncode == 2 and lines:
        return lines[-1].replace(str(path), path.name)
    if r.returncode < 0:
        try:
            sig = signal.Signals(-r.returncode).name
        except ValueError:
            sig = f"signal {-r.returncode}"
        return (f"{role} {path.name}: the file crashed the decoder ({sig}); it was not used. Convert it (e.g. to a "
                "mono or stereo WAV / an H.264 mp4) and upload it again")
    return f"{role} {path.name}: the file could not be decoded (decoder exit status {r.returncode}); it was not used"
