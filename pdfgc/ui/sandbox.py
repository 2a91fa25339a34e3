"""Where the page may read (uploads, shipped examples) and write (per-session outputs), and error texts that name
uploads as the user knows them."""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..media.audio_io import container_seconds, decode_audio
from .probe import check_in_child
from .settings import EXAMPLES_DIR, UISettings


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


class Sandbox:
    """Where the app may read (uploads, shipped examples) and write (per-session outputs)."""

    def __init__(self, upload_root: Path, output_root: Path, max_upload_mb: float,
                 extra_inputs: tuple[Path, ...] = (EXAMPLES_DIR,), probe: bool = True):
        self.upload_root = Path(os.path.realpath(upload_root))
        self.output_root = Path(os.path.realpath(output_root))
        self.input_roots = (self.upload_root,) + tuple(Path(os.path.realpath(p)) for p in extra_inputs)
        self.max_upload_mb = float(max_upload_mb)
        self.probe = probe  # uploads are decoded in a child process before the server opens them (probe.py)
        self.upload_root.mkdir(parents=True, exist_ok=True)
        self.output_root.mkdir(parents=True, exist_ok=True)

    def input(self, value: Any, role: str) -> Path | None:
        """A widget's file value -> a checked path inside the upload/examples area, or None when empty."""
        if value is None or value == "":
            return None
        raw = value if isinstance(value, (str, os.PathLike)) else (
            value.get("path") if isinstance(value, dict) else getattr(value, "path", None))
        if raw is None:
            raise InputError(f"{role}: not a file")
        real = Path(os.path.realpath(raw))  # symlinks and '..' resolved before the check
        if not any(_within(real, root) for root in self.input_roots):
            raise InputError(f"{role} {Path(raw).name}: outside the upload area; upload the file instead")
        if not real.is_file():
            raise InputError(f"{role} {real.name}: not found (upload it again)")
        size_mb = real.stat().st_size / 1e6
        if size_mb > self.max_upload_mb:
            raise InputError(f"{role} {real.name}: {size_mb:.1f} MB is over the {self.max_upload_mb:g} MB upload "
                             "limit")
        if self.probe and _within(real, self.upload_root):
            check_in_child(real, role)  # decoded first in a child process: a crashing file cannot end the server
        return real

    def session_dir(self, session: str | None) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_-]", "", session or "")[:64] or "local"
        d = self.output_root / safe
        d.mkdir(parents=True, exist_ok=True)
        return d

    def output_path(self, session: str | None, stem: str = "pdfgc") -> Path:
        return self.session_dir(session) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-" \
                                           f"{threading.get_ident() % 10000}.mp4"

    def prune(self, max_age_s: float) -> None:
        now = time.time()
        for d in self.output_root.iterdir():
            if d.is_dir() and now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)


def media_seconds(path: Path, role: str) -> float:
    """Duration of an audio/video file, from the container (decoding only if the container does not say)."""
    seconds = container_seconds(path, role)
    if seconds:
        return seconds
    samples, rate = decode_audio(path, role)
    return samples.shape[-1] / rate


def user_message(err: BaseException, paths: list[Path | None], roots: tuple[Path, ...] = ()) -> str:
    """The pdfgc error text with upload-area paths shown as the bare file names the user knows."""
    msg = str(err)
    for p in sorted((p for p in paths if p is not None), key=lambda p: -len(str(p))):
        msg = msg.replace(str(p), p.name)
    for root in roots:  # any other path inside our own areas (e.g. a copy gradio made): its name only
        msg = re.sub(re.escape(str(root)) + r"/(?:[^\s/]+/)*", "", msg)
    return msg


def prepare_work_dir(settings: UISettings) -> Sandbox:
    """Create the app's upload and output areas and point gradio's upload cache at the former."""
    work = Path(settings.work_dir or tempfile.mkdtemp(prefix="pdfgc-ui-"))
    sandbox = Sandbox(work / "uploads", work / "outputs", settings.max_upload_mb)
    # gradio reads this for every upload and cache copy: every file the page receives lands here
    os.environ["GRADIO_TEMP_DIR"] = str(sandbox.upload_root)
    # a few gradio modules copy it once, when imported (a second app in this process, or gradio imported before,
    # would write into another run's -- removed, then re-created -- folder): point them here too
    for name in ("gradio.route_utils", "gradio.routes", "gradio.mcp", "gradio.screen_recording_utils"):
        mod = sys.modules.get(name)
        if mod is not None and isinstance(getattr(mod, "DEFAULT_TEMP_DIR", None), str):
            mod.DEFAULT_TEMP_DIR = str(sandbox.upload_root)
    return sandbox
