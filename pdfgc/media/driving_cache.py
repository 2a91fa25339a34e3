"""The driving clips' measured face meshes, kept on disk: a creator re-uses the same head-motion, emotion or eye
clip across many portraits and audio tracks (LivePortrait saves a driving clip's motion as a template for the same
reason), and measuring it again (the pose clip of the README's main command: 361 frames on one mediapipe tracker,
~2 s of CPU on the job's critical path) is wasted work.

What is kept is portrait-independent: the tracker's raw (478, 3) mesh per measured frame (NaN where it found no
face), in the order measured. An entry is named by the clip's content (SHA-256 of the video's or image's bytes, or
of a folder's sorted frame-file names and bytes), how its crops were made (aligned by us, and then how many frames
were read: the alignment is smoothed over them), the first measured crop, the tracker's settings, mediapipe's,
OpenCV's and PyAV's versions and `VERSION` (raise it when the measuring code changes). Inside, each measured
crop's SHA-256 is kept beside its mesh and checked on use, so a hit serves the tracker's output for exactly the
crops it is asked for.

The tracker is causal and deterministic (the same crops in the same order give the same meshes bit for bit, and
the first n frames of a longer run are those of a run of n), so an entry serves any request whose frames are a
prefix of the frames it holds (a shorter audio track); a longer or other request is measured and replaces it.

Entries are ``.npz`` files read with ``allow_pickle=False`` and written atomically (`pdfgc.fileio.atomic_path`)
under ``cache_dir("driving")``: ``$PDFGC_CACHE/driving``, else ``$XDG_CACHE_HOME/pdfgc/driving``, else
``~/.cache/pdfgc/driving``. A corrupt, unreadable or mismatched entry is logged (one line) and measured again; a
failed write is logged and the job goes on. An entry is ~4 MB per 360 measured frames; after each write the least
recently used entries go until the folder holds at most `max_bytes()` (``$PDFGC_CACHE_MAX_MB``, default 1024 MB;
0 keeps only the latest), the entry just written always kept. A hit marks its entry used (its mtime).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from ..fileio import atomic_path, cache_dir

log = logging.getLogger("pdfgc")

# the measuring code's version: raise it when what the tracker is given or how its output is kept changes
VERSION = 2
# the tracker's settings (`pdfgc.media.mesh.FaceMeshDetector` as `MeshWarpFamily._clip_meshes` makes it: change both)
TRACKER = "FaceMesh(static_image_mode=False,max_num_faces=1,refine_landmarks=True,det=0.5,track=0.5)"
_CHUNK = 1 << 20
MAX_MB = 1024  # ~250 driving clips of the README's pose clip's length


def max_bytes() -> int:
    """The folder's size cap: ``$PDFGC_CACHE_MAX_MB`` (a number of MB, >= 0), else `MAX_MB`."""
    raw = os.environ.get("PDFGC_CACHE_MAX_MB", "")
    try:
        mb = float(raw) if raw.strip() else MAX_MB
    except ValueError:
        log.warning("driving cache: PDFGC_CACHE_MAX_MB=%r is not a number; using %d", raw, MAX_MB)
        mb = MAX_MB
    return int(max(mb, 0.0) * (1 << 20))


def prune(folder: Path, keep: Path | None = None, limit: int | None = None) -> None:
    """Remove the least recently used entries of `folder` (by mtime) until it holds at most `limit` bytes; `keep`
    stays whatever its size. Entries another process removes meanwhile are skipped."""
    limit = max_bytes() if limit is None else limit
    entries = []
    for p in folder.glob("*.npz"):
        try:
            st = p.stat()
        except OSError:
            continue
        entries.append((p == keep, st.st_mtime, st.st_size, p))
    total = 0
    for kept, _, size, p in sorted(entries, key=lambda e: (e[0], e[1]), reverse=True):
        total += size
        if total > limit and not kept:
            p.unlink(missing_ok=True)


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import av
    import cv2

    try:
        mp = version("mediapipe")
    except PackageNotFoundError:
        mp = "none"
    return f"v{VERSION} mediapipe {mp} cv2 {cv2.__version__} av {av.__version__} {TRACKER}"


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def content_digest(path: str | os.PathLike, kind: str) -> str:
    """SHA-256 of a driving source's content: a file's bytes; a folder's frame files (sorted names and bytes)."""
    from .video import list_frame_files

    path = Path(path)
    h = hashlib.sha256()
    if kind == "folder":
        for f in list_frame_files(path):
            name = f.name.encode()
            h.update(len(name).to_bytes(8, "little") + name + f.stat().st_size.to_bytes(8, "little"))
            _hash_file(h, f)
    else:
        _hash_file(h, path)
    return h.hexdigest()


# a crop's digest reads every 4th row and column: another frame or another alignment differs there, and 1/16 of
# the bytes keeps it off the job's critical path (the pose clip's 54 MB of whole crops took 0.07-0.36 s of wall)
DIGEST_STRIDE = 4


def crop_digests(crops, frames) -> np.ndarray:
    """(len(frames), 32) uint8: each crop's SHA-256 over its `DIGEST_STRIDE` subsample."""
    out = np.empty((len(frames), 32), np.uint8)
    for k, i in enumerate(frames):
        sample = np.ascontiguousarray(np.asarray(crops[i])[::DIGEST_STRIDE, ::DIGEST_STRIDE])
        out[k] = np.frombuffer(hashlib.sha256(sample.data).digest(), np.uint8)
    return out


class ClipMeshCache:
    """The kept meshes of one driving clip (`DrivingClip`): `load(frames)` -> the meshes or None; `save`."""

    def __init__(self, clip, frames, root: Path | None = None):
        self.frames = np.asarray(frames, np.int64)
        self.label = Path(clip.path).name
        self.path = None  # no entry: the source could not be read again
        self._crops, self._digests = clip.crops, None
        try:
            read = f"aligned over {clip.num_frames} frames" if clip.aligned_by_us else "not aligned"
            first = crop_digests(clip.crops, self.frames[:1])[0].tobytes().hex() if len(self.frames) else "-"
            self.key = (
                f"{_versions()} | {clip.kind} {content_digest(clip.path, clip.kind)} | {read} | first crop {first}"
            )
        except Exception as exc:  # noqa: BLE001 - measured as without the cache
            log.warning("driving cache: not used for %s (%s: %s)", self.label, type(exc).__name__, exc)
            return
        self.path = (root or cache_dir("driving")) / f"{hashlib.sha256(self.key.encode()).hexdigest()[:32]}.npz"

    @property
    def digests(self) -> np.ndarray:
        """The asked crops' digests, computed when an entry is checked or written (not before the tracker)."""
        if self._digests is None:
            self._digests = crop_digests(self._crops, self.frames)
        return self._digests

    def load(self) -> np.ndarray | None:
        """(len(frames), 478, 3) float64 meshes as the tracker measured them, or None (no entry, or one that does
        not hold these frames: logged when it is corrupt or mismatched)."""
        if self.path is None or not self.path.exists():
            return None
        n = len(self.frames)
        try:
            with np.load(self.path, allow_pickle=False) as z:
                key, frames, digests, meshes = str(z["key"][()]), z["frames"], z["digests"], z["meshes"]
            if (
                key != self.key
                or frames.dtype != np.int64
                or digests.shape != (len(frames), 32)
                or meshes.dtype != np.float64
                or meshes.shape != (len(frames), 478, 3)
            ):
                raise ValueError("its contents do not match its name")
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is measured again, never an error
            log.warning(
                "driving cache: ignoring %s for %s (%s: %s); measuring again",
                self.path,
                self.label,
                type(exc).__name__,
                exc,
            )
            return None
        if len(frames) < n or not np.array_equal(frames[:n], self.frames):
            return None  # other frames of the same clip: measured, then kept in its place
        if not np.array_equal(digests[:n], self.digests):
            log.warning("driving cache: %s holds other crops of %s; measuring again", self.path, self.label)
            return None
        try:
            os.utime(self.path)  # used now: the last to be evicted
        except OSError:
            pass
        return np.ascontiguousarray(meshes[:n])

    def save(self, meshes: np.ndarray) -> None:
        """Keep `meshes` (the tracker's output for `frames`); a failure is logged, never raised."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
                np.savez(
                    f,
                    key=np.array(self.key),
                    frames=self.frames,
                    digests=self.digests,
                    meshes=np.ascontiguousarray(meshes, np.float64),
                )
            prune(self.path.parent, keep=self.path)
        except Exception as exc:  # noqa: BLE001 - the job goes on without its cache entry
            log.warning("driving cache: could not write %s (%s: %s)", self.path, type(exc).__name__, exc)


def clip_meshes(clip, todo, cache: bool = True, on_frame=None) -> np.ndarray:
    """(len(todo), 478, 3) float64: the tracker's mesh of each crop `clip.crops[i]`, i in `todo` (sorted, measured in
    that order on one tracking-mode graph; NaN where it found no face). With `cache`, read from the entry an earlier
    job kept, else measured and kept. A `pdfgc animate` that started the clips' meshes in a child process
    (`pdfgc.media.prewarm`) waits for it first: it writes this entry. `on_frame()` after each measured frame."""
    from .mesh import FaceMeshDetector
    from .prewarm import wait_for

    if cache:
        wait_for(clip.path)
    kept = ClipMeshCache(clip, todo) if cache and len(todo) else None
    measured = kept.load() if kept is not None else None
    if measured is not None:
        return measured
    out = np.full((len(todo), 478, 3), np.nan)
    # tracking mode: mediapipe re-detects only when it loses the face (about 2x faster than a detection per frame,
    # and steadier landmarks for a video); TRACKER names these settings in the entries' key
    with FaceMeshDetector(static_image_mode=False, max_num_faces=1) as tracker:
        for k, i in enumerate(todo):
            faces = tracker.detect(np.asarray(clip.crops[i]))
            if faces:
                out[k] = faces[0]
            if on_frame is not None:
                on_frame()
    if kept is not None:
        kept.save(out)
    return out
