"""What `pdfgc evaluate` reads: a generated video (or frames folder), the official five-panel layout
(appearance | generated | pose | expression | eye, 224 px each), and driving sources aligned to output frames."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import InputError
from ..media.images import load_image_rgb
from ..media.video import iter_frames_folder, iter_video_frames, list_frame_files
from ..official_rules import OFFICIAL_SKIP, frame_indices
from ..vocabulary import FPS

PANEL_NAMES = ("appearance", "generated", "pose", "emotion", "eyes")


def _open_frames(path: Path, source: str) -> Callable[[], Iterator[np.ndarray]]:
    if path.is_dir():
        list_frame_files(path, source=source)
        return lambda: iter_frames_folder(path, source=source)
    if not path.exists():
        raise InputError(f"{source} {path}: no such file or folder")
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        img = load_image_rgb(path)
        return lambda: iter([img])
    return lambda: iter_video_frames(path, fps=float(FPS), source=source)


def count_frames(frames: Callable[[], Iterator[np.ndarray]]) -> int:
    return sum(1 for _ in frames())


@dataclass
class Stream:
    """A re-iterable sequence of RGB frames (decoded lazily, so long videos are never held in memory).

    `index[i]` is the stream frame shown with output frame i (None: frame i itself). Signals are measured once per
    stream frame, in the stream's own order (so face tracking sees real motion), then re-timed with `index`."""

    name: str
    open: Callable[[], Iterator[np.ndarray]]
    length: int
    index: np.ndarray | None = None

    def __iter__(self):
        return self.open()

    def retime(self, per_frame: np.ndarray) -> np.ndarray:
        return per_frame if self.index is None else per_frame[self.index]


def generated_streams(path: str | Path, layout: str = "auto") -> dict[str, Stream]:
    """The generated video as streams: {'generated'} or, for the official strip, one stream per panel."""
    path = Path(path)
    frames = _open_frames(path, "generated video")
    first = next(iter(frames()), None)
    if first is None:
        raise InputError(f"generated video {path}: has no frames")
    h, w = first.shape[:2]
    if layout == "auto":
        layout = "panels" if w == 5 * h else "result"
    n = count_frames(frames)
    if layout == "result":
        return {"generated": Stream("generated", frames, n)}
    if w != 5 * h:
        raise InputError(f"generated video {path}: {w}x{h} is not the official five-panel layout (width = 5 x height)")

    def panel(i: int) -> Callable[[], Iterator[np.ndarray]]:
        return lambda: (np.ascontiguousarray(f[:, i * h:(i + 1) * h]) for f in frames())
    return {name: Stream(name, panel(i), n) for i, name in enumerate(PANEL_NAMES)}


def source_stream(path: str | Path, name: str, num_out: int, mode: str = "loop", skip: int = OFFICIAL_SKIP) -> Stream:
    """A driving source re-timed to the output frames with the pipeline's schedule (official: skip 2, loop)."""

    path = Path(path)
    frames = _open_frames(path, f"{name} source")
    n = count_frames(frames)
    idx = np.zeros(num_out, dtype=int) if n == 1 else frame_indices(n, num_out, mode, skip, source=f"{name} {path}")
    used = int(idx.max()) + 1 if len(idx) else 0

    def head() -> Iterator[np.ndarray]:  # the source read only as far as the output uses it
        for i, f in enumerate(frames()):
            if i >= used:
                return
            yield f
    return Stream(name, head, used, idx)
