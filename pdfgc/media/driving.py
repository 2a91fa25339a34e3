"""Driving sources (a video file, a folder of frames, or one still image) turned into the motion encoder's
network-input crops, aligned with a temporally smoothed crop when they are not aligned already.

Crops live in a disk-backed array so memory stays flat however long the source is; only the frames the output
will use are read (the official code reads every frame of a folder).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import InputError
from ..official_rules import SIZE, official_crop_zoom
from ..vocabulary import ALIGN_MODES, FPS
from .alignment import SequenceAligner
from .images import read_image_rgb
from .video import IMAGE_EXTENSIONS, iter_frames_folder, iter_video_frames, list_frame_files

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif")


def source_kind(path: str | os.PathLike, role: str = "driving source") -> str:
    p = Path(path)
    if p.is_dir():
        return "folder"
    if not p.exists():
        raise InputError(f"{role} {p}: no such file or folder")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return "image"
    return "video"


def _frame_factory(path: Path, kind: str, role: str) -> Callable[[], Iterator[np.ndarray]]:
    # frames are read with cv2.imread, as the official code reads them (JPEG decoding matches it bit for bit)
    if kind == "folder":
        list_frame_files(path, source=role)  # fail early on a missing or empty folder
        return lambda: iter_frames_folder(path, source=role)
    if kind == "image":
        return lambda: iter([read_image_rgb(path, source=role)])
    return lambda: iter_video_frames(path, fps=float(FPS), source=role)


def _take(it: Iterator[np.ndarray], n: int | None) -> Iterator[np.ndarray]:
    for i, frame in enumerate(it):
        if n is not None and i >= n:
            return
        yield frame


@dataclass
class DrivingClip:
    """Network-input crops (N,224,224,3) uint8 of one driving source, plus how they were made."""

    path: Path
    kind: str               # folder | video | image
    crops: np.ndarray       # (N,224,224,3) uint8, disk-backed for long sources
    aligned_by_us: bool
    missing_faces: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.crops.shape[0])

    def unique_index(self) -> np.ndarray:
        """For each frame, the index of the first byte-identical frame (held frames are encoded once)."""
        # a sample of each frame's bytes sorts the frames into buckets; within one, whole frames are compared (no
        # hash of every byte: ~0.1 s of CPU less for the 500 frames of the README's main command)
        seen: dict[bytes, list[int]] = {}
        out = np.empty(self.num_frames, dtype=np.int64)
        for i in range(self.num_frames):
            frame = self.crops[i]
            bucket = seen.setdefault(frame.reshape(-1)[::61].tobytes(), [])
            out[i] = next((j for j in bucket if np.array_equal(self.crops[j], frame)), i)
            if out[i] == i:
                bucket.append(i)
        return out


def open_driving(path: str | os.PathLike, max_frames: int | None = None, align: str = "auto",
                 official_crop: bool = True, role: str = "driving source", workdir: str | None = None,
                 progress: bool = False) -> DrivingClip:
    """Read up to `max_frames` frames of a driving source into network-input crops.

    align: `auto` (224x224 frames are taken as aligned crops, anything else is face-aligned), `always`, `never`
    (frames are only resized to 224).
    """
    if align not in ALIGN_MODES:
        raise InputError(f"unknown align mode '{align}' ({', '.join(ALIGN_MODES)})")
    path = Path(path)
    kind = source_kind(path, role)
    frames = _frame_factory(path, kind, role)
    first = next(iter(frames()), None)
    if first is None:
        raise InputError(f"{role} {path}: has no frames")
    do_align = align == "always" or (align == "auto" and first.shape[:2] != (SIZE, SIZE))
    missing = 0
    if do_align:
        aligner = SequenceAligner(source=f"{role} {path}")
        it = _take(frames(), max_frames)
        if progress:
            import sys

            from tqdm import tqdm
            it = tqdm(it, total=max_frames, unit="frame", desc=f"aligning {path.name}", file=sys.stderr,
                      dynamic_ncols=True, leave=False)
        for frame in it:
            aligner.add(frame)
        aligner.finalize()
        missing = aligner.missing_faces
        crop_iter = (aligner.warp(i, f) for i, f in enumerate(_take(frames(), max_frames)))
    else:
        import cv2

        crop_iter = (f if f.shape[:2] == (SIZE, SIZE) else cv2.resize(f, (SIZE, SIZE))
                     for f in _take(frames(), max_frames))
    n_cap = max_frames if max_frames is not None else None
    store = _CropStore(n_cap, workdir)
    for crop in crop_iter:
        store.append(official_crop_zoom(crop) if official_crop else crop)
    if store.count == 0:
        raise InputError(f"{role} {path}: has no frames")
    return DrivingClip(path, kind, store.finish(), do_align, missing)


class _CropStore:
    """Append-only (N,224,224,3) uint8 array; spills to a temporary memmap past a few hundred frames."""

    IN_MEMORY = 256

    def __init__(self, cap: int | None, workdir: str | None):
        self.cap, self.workdir = cap, workdir
        self.count = 0
        self._list: list[np.ndarray] = []
        self._mm: np.ndarray | None = None
        self._capacity = 0

    def append(self, crop: np.ndarray) -> None:
        if self._mm is None and len(self._list) < self.IN_MEMORY:
            self._list.append(np.ascontiguousarray(crop, dtype=np.uint8))
        else:
            if self._mm is None or self.count >= self._capacity:
                self._grow()
            self._mm[self.count] = crop
        self.count += 1

    def _grow(self) -> None:
        new_cap = max(2 * max(self._capacity, self.IN_MEMORY), 1024)
        if self.cap is not None:
            new_cap = min(new_cap, max(self.cap, self.count + 1))
        fd, name = tempfile.mkstemp(prefix="pdfgc-crops-", suffix=".u8", dir=self.workdir)
        os.close(fd)
        mm = np.lib.format.open_memmap(name, mode="w+", dtype=np.uint8, shape=(new_cap, SIZE, SIZE, 3))
        os.unlink(name)  # the mapping keeps the data alive; nothing is left behind on exit
        if self._mm is not None:
            mm[: self.count] = self._mm[: self.count]
        else:
            for i, c in enumerate(self._list):
                mm[i] = c
            self._list = []
        self._mm, self._capacity = mm, new_cap

    def finish(self) -> np.ndarray:
        if self._mm is None:
            return np.stack(self._list) if self._list else np.zeros((0, SIZE, SIZE, 3), np.uint8)
        return self._mm[: self.count]
