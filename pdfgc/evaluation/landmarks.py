"""Face-mesh tracks for `pdfgc evaluate`: mediapipe's 478 points for every frame of a video, cached on disk.

``track_faces`` runs ``pdfgc.media.face.FaceMeshDetector`` (mediapipe 0.10.21 FaceMesh with iris refinement) in
video/tracking mode with one face over a frame sequence (``static=True`` for unrelated images: every frame is
detected from scratch). Frames without a face are kept as NaN rows with ``found`` False and counted in ``missing``:
never dropped, so every signal stays aligned with the video's frames.

Cache: with ``cache=path``, the track is saved as .npz together with a fingerprint of every frame (a 64-bit
BLAKE2b hash of a strided subsample of at most ~160x160 pixels, plus the frame size) and the frame count. On the
next call the frames are still decoded and fingerprinted (~0.1 ms a frame), but mediapipe does not run while they
match the cache. Tracking is causal, so if the content changes at frame i the cached rows before i are kept and
mediapipe restarts at frame i (and the cache is rewritten); a cache made in the other mode (static / tracking), of
another format or unreadable is ignored and overwritten.

Measured here (2 CPU cores, mediapipe 0.10.21, frames already decoded, warm process): ``track_faces`` ~3.2-3.4 ms
a frame on the 224x224 VoxCeleb2 eye (101 frames) and pose (363 frames) clips, ~3.3 ms on the 256x256
pose_source1.mp4 (250 frames); the first tracker of a process costs ~0.5 s more (importing and building mediapipe).
A cache hit costs ~0.12-0.16 ms a frame (fingerprint and copy; decoding not included). All signals of
``signals.py`` together ~25 us a frame (``head_pose`` ~9 us).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InputError
from ..fileio import atomic_path
from ..media import face
from ..media.images import _as_rgb_uint8
from ..media.mesh_indices import NUM_POINTS

CACHE_VERSION = 1
_FINGERPRINT_SIDE = 160  # at most this many sampled rows and columns per frame


@dataclass
class FaceTrack:
    """Landmarks of one face over N frames.

    landmarks: (N,478,3) float32 pixel coordinates (x, y, and z on x's scale); NaN rows where no face was found.
    found: (N,) bool. size: (height, width) of the frames. fingerprints: (N,) uint64 per-frame content hashes
    (used by the cache; None when unknown). static: whether the frames were detected independently.
    """

    landmarks: np.ndarray
    found: np.ndarray
    size: tuple[int, int]
    fingerprints: np.ndarray | None = None
    static: bool = False

    def __post_init__(self) -> None:
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
        if self.landmarks.ndim != 3 or self.landmarks.shape[1:] != (NUM_POINTS, 3):
            raise ValueError(f"FaceTrack landmarks must be (N,{NUM_POINTS},3), got shape {self.landmarks.shape}")
        self.found = np.asarray(self.found, dtype=bool).reshape(-1)
        if len(self.found) != len(self.landmarks):
            raise ValueError(f"FaceTrack: {len(self.found)} found flags for {len(self.landmarks)} frames")
        self.size = (int(self.size[0]), int(self.size[1]))
        if self.fingerprints is not None:
            self.fingerprints = np.asarray(self.fingerprints, dtype=np.uint64).reshape(-1)
            if len(self.fingerprints) != len(self.landmarks):
                raise ValueError("FaceTrack: fingerprints and landmarks differ in length")
        self.static = bool(self.static)

    @property
    def num_frames(self) -> int:
        return int(len(self.landmarks))

    @property
    def missing(self) -> int:
        """Frames in which no face was found."""
        return int((~self.found).sum())

    def save(self, path: str | os.PathLike) -> None:
        """Write the track to ``path`` (.npz, written atomically; the name is used as given)."""
        path = Path(path)
        fps = self.fingerprints if self.fingerprints is not None else np.zeros(0, np.uint64)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, version=np.int64(CACHE_VERSION), landmarks=self.landmarks, found=self.found,
                         size=np.array(self.size, np.int64), fingerprints=fps,
                         has_fingerprints=self.fingerprints is not None,
                         static=self.static)
        except OSError as e:
            raise InputError(f"face-track cache {path}: cannot write: {e}") from e

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FaceTrack":
        """Read a track written by ``save``; InputError naming the file when it is missing, corrupt or stale."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["version"])
                if version != CACHE_VERSION:
                    raise InputError(f"face-track cache {path}: format version {version}, expected {CACHE_VERSION}")
                return cls(landmarks=z["landmarks"], found=z["found"], size=tuple(z["size"].tolist()),
                           fingerprints=z["fingerprints"] if bool(z["has_fingerprints"]) else None,
                           static=bool(z["static"]))
        except InputError:
            raise
        except FileNotFoundError as e:
            raise InputError(f"face-track cache {path}: no such file") from e
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise InputError(f"face-track cache {path}: unreadable or corrupt ({e})") from e


def frame_fingerprint(frame: np.ndarray) -> np.uint64:
    """Cheap 64-bit content hash of a frame: its shape and a strided subsample of at most ~160x160 pixels."""
    h, w = frame.shape[:2]
    sy, sx = max(1, -(-h // _FINGERPRINT_SIDE)), max(1, -(-w // _FINGERPRINT_SIDE))
    digest = hashlib.blake2b(np.array(frame.shape, np.int64).tobytes(), digest_size=8)
    digest.update(np.ascontiguousarray(frame[::sy, ::sx]).tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint64)[0]


def _load_cache(cache: Path, static: bool) -> FaceTrack | None:
    if not cache.exists():
        return None
    try:
        cached = FaceTrack.load(cache)
    except InputError:
        return None  # stale or corrupt: recomputed and overwritten
    if cached.fingerprints is None or cached.static != bool(static):
        return None
    return cached


def track_faces(
    frames: Iterable[np.ndarray],
    source: str = "video",
    cache: str | Path | None = None,
    static: bool = False,
) -> FaceTrack:
    """478-point face mesh of the (largest) face in every frame: mediapipe tracking mode, one face.

    ``frames``: RGB uint8 (H,W,3) arrays (grey and RGBA are accepted), all the same size. ``static=True`` detects
    every frame independently (for unrelated images). ``cache``: an .npz path; when it exists and its frame
    fingerprints match, its landmarks are used instead of running mediapipe (see the module docstring), and it is
    (re)written whenever anything had to be computed (a failed write only warns). InputError (naming ``source``) for no
    frames, a frame of another size or a non-image frame.
    """
    cache = Path(cache) if cache is not None else None
    cached = _load_cache(cache, static) if cache is not None else None
    reusing = cached is not None
    detector = None
    rows: list[np.ndarray] = []
    found: list[bool] = []
    prints: list[np.uint64] = []
    size: tuple[int, int] | None = None
    missing_row = np.full((NUM_POINTS, 3), np.nan, np.float32)
    try:
        for i, frame in enumerate(frames):
            frame = _as_rgb_uint8(frame, f"{source} (frame {i})")
            if size is None:
                size = (int(frame.shape[0]), int(frame.shape[1]))
            elif frame.shape[:2] != size:
                raise InputError(f"{source}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                                 f"the first frame was {size[1]}x{size[0]}")
            fp = frame_fingerprint(frame)
            prints.append(fp)
            if reusing and (i >= cached.num_frames or cached.size != size or cached.fingerprints[i] != fp):
                reusing = False
            if reusing:
                rows.append(cached.landmarks[i])
                found.append(bool(cached.found[i]))
                continue
            if detector is None:
                # looked up on the module at call time: the tests swap it to prove a cache hit runs no mediapipe
                detector = face.FaceMeshDetector(static_image_mode=static, max_num_faces=1)
            faces = detector.detect(frame)
            rows.append(faces[0].astype(np.float32) if faces else missing_row)
            found.append(bool(faces))
    finally:
        if detector is not None:
            detector.close()
    if size is None:
        raise InputError(f"{source}: no frames")
    track = FaceTrack(landmarks=np.stack(rows), found=np.array(found, bool), size=size,
                      fingerprints=np.array(prints, np.uint64), static=static)
    if cache is not None and not (cached is not None and reusing and cached.num_frames == track.num_frames):
        try:
            track.save(cache)
        except InputError as e:  # the cache only saves time: say so, but keep the result
            warnings.warn(f"{source}: landmarks not cached: {e}", UserWarning, stacklevel=2)
    return track
