"""The mediapipe face-mesh wrapper: ``FaceMeshDetector`` (0.10.21, legacy ``FaceMesh(refine_landmarks=True)``,
478 points, bundled models, nothing downloaded), ``find_faces`` with the window search for small faces, and
``quiet_native_stderr`` for mediapipe's C++ log lines."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import types

import cv2
import numpy as np

from ..errors import PDFGCError

# fd 2 is one per process: threads that silence it at once (several graphs starting on the pipeline's threads)
# share one redirection, made by the first and undone by the last (each saving and restoring its own left fd 2 on
# /dev/null for good when two overlapped)
_QUIET_LOCK = threading.Lock()
_quiet_depth = 0
_quiet_saved: int | None = None


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence mediapipe's C++ log lines (written to fd 2 before absl logging is initialised) unless
    PDFGC_VERBOSE is set; Python-level errors are raised as usual. Thread-safe (nested and overlapping uses share
    one redirection)."""
    global _quiet_depth, _quiet_saved
    if os.environ.get("PDFGC_VERBOSE"):
        yield
        return
    with _QUIET_LOCK:
        if _quiet_depth == 0:
            sys.stderr.flush()
            try:
                saved = os.dup(2)
            except OSError:
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _quiet_saved = saved
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_saved is not None:
                os.dup2(_quiet_saved, 2)
                os.close(_quiet_saved)
                _quiet_saved = None


class _DeferredModule(types.ModuleType):
    """Stands in for a module while mediapipe is imported (``import_face_mesh``); any attribute use imports the real
    module and answers from it."""

    def __getattr__(self, name):
        import importlib
        if sys.modules.get(self.__name__) is self:   # still standing in: no real module to ask
            raise AttributeError(name)
        return getattr(importlib.import_module(self.__name__), name)


# what mediapipe's package __init__ imports and the face mesh never uses: its drawing helpers' matplotlib.pyplot
# (~0.4 s of CPU per process, measured here). (Its Tasks API, ~0.07 s, stays: `mediapipe.tasks` is rebound when the
# real package is imported later, which would leave `mp.tasks` the wrong module.)
_STAND_INS = {"matplotlib": "pyplot", "matplotlib.pyplot": None}


def import_face_mesh():
    """mediapipe's ``solutions.face_mesh`` module, imported without what ``_STAND_INS`` lists (``_DeferredModule``s,
    in ``sys.modules`` only while the import runs, so a later import of any of them gets the real one)."""
    if "mediapipe" in sys.modules or any(n in sys.modules for n in _STAND_INS):
        from mediapipe.python.solutions import face_mesh
        return face_mesh
    stand_ins = {n: _DeferredModule(n) for n in _STAND_INS}
    for n, child in _STAND_INS.items():
        if child:   # `import a.b as x` reads b as an attribute of a
            setattr(stand_ins[n], child, stand_ins[f"{n}.{child}"])
    sys.modules.update(stand_ins)
    try:
        from mediapipe.python.solutions import face_mesh
    finally:
        for n, m in stand_ins.items():
            if sys.modules.get(n) is m:
                del sys.modules[n]
    return face_mesh


# one landmark of a serialized NormalizedLandmarkList holding x, y, z only: field 1 (a message) of 15 bytes, then the
# three floats as fields 1-3 (fixed32)
_LANDMARK = np.dtype([("tag", "u1"), ("len", "u1"), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"),
                      ("tz", "u1"), ("z", "<f4")])


def landmarks_xyz(face) -> np.ndarray:
    """(N,3) float64 x, y, z of a NormalizedLandmarkList: read from its serialized bytes in one go (the same
    float32 values as reading ``face.landmark`` point by point, ~0.2 ms a frame less), else point by point (any
    other field set)."""
    raw = face.SerializeToString()
    n = len(face.landmark)
    if len(raw) == n * _LANDMARK.itemsize:
        a = np.frombuffer(raw, _LANDMARK)
        if ((a["tag"] == 0x0A) & (a["len"] == 15) & (a["tx"] == 0x0D) & (a["ty"] == 0x15) & (a["tz"] == 0x1D)).all():
            return np.stack([a["x"], a["y"], a["z"]], 1).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)


class FaceMeshDetector:
    """mediapipe FaceMesh(refine_landmarks=True), static-image mode for photos, video/tracking mode for sequences."""

    def __init__(self, static_image_mode: bool = True, max_num_faces: int = 4, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5):
        # mediapipe's C++ side logs feedback-tensor and XNNPACK notes to stderr on every graph start: keep them
        # out of the user's terminal unless asked for
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            face_mesh = import_face_mesh()
        except ImportError as exc:  # set-up problem, not an input problem
            raise PDFGCError(
                "face alignment needs mediapipe 0.10.21 (the last release that ships its models): "
                "pip install --no-deps mediapipe==0.10.21 absl-py attrs flatbuffers 'protobuf<5' matplotlib"
            ) from exc
        self.static_image_mode = static_image_mode
        self.max_num_faces = max_num_faces
        with quiet_native_stderr():
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=static_image_mode,
                max_num_faces=max_num_faces,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
            # start_run() opens the graph's calculators on mediapipe's own threads, which log the TFLite lines
            # after the constructor returns: wait for them while fd 2 is still silenced
            graph = getattr(self._mesh, "_graph", None)
            if graph is not None:
                graph.wait_until_idle()
        # the graph's first image loads its TFLite models, which log; later images log nothing (checked on a clip
        # with a lost face), so they run with fd 2 as it is (another thread's progress bar keeps showing)
        self._quiet_next = True

    def detect(self, image_rgb: np.ndarray) -> list[np.ndarray]:
        """(478,3) landmarks in pixels (x, y, and z on x's scale) per face found, largest face first."""
        if self._mesh is None:
            raise RuntimeError("FaceMeshDetector is closed")
        image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        h, w = image.shape[:2]
        if self._quiet_next:
            with quiet_native_stderr():
                result = self._mesh.process(image)
            self._quiet_next = False
        else:
            result = self._mesh.process(image)
        faces = []
        for face in result.multi_face_landmarks or ():
            lm = landmarks_xyz(face)
            lm *= (w, h, w)
            faces.append(lm)
        faces.sort(key=_bbox_area, reverse=True)
        return faces

    def close(self) -> None:
        if self._mesh is not None:
            with quiet_native_stderr():
                self._mesh.close()
            self._mesh = None

    def __enter__(self) -> "FaceMeshDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _bbox(lm: np.ndarray) -> np.ndarray:
    return np.concatenate([lm[:, :2].min(0), lm[:, :2].max(0)])


def _bbox_area(lm: np.ndarray) -> float:
    b = _bbox(lm)
    return float((b[2] - b[0]) * (b[3] - b[1]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _window_starts(n: int, win: int, step: int) -> list[int]:
    if n <= win:
        return [0]
    starts = list(range(0, n - win, step))
    return starts + [n - win]


def find_faces(image_rgb: np.ndarray, detector: FaceMeshDetector, min_face_px: float = 40, windows: bool = True
               ) -> list[np.ndarray]:
    """All faces (largest first): the whole image, the image with a border, then overlapping windows, coarse to fine.

    The windows (halving in size down to ~4x ``min_face_px``, and at least 1/12 of the long side so huge images
    stay cheap) find faces too small for mediapipe's whole-image detector, including ones below ``min_face_px``,
    so the caller can say "too small" rather than "no face". ``windows=False`` skips that slower search (~0.1-0.5 s
    when nothing is found). Use a static-image-mode detector.
    """
    faces = detector.detect(image_rgb)
    if faces:
        return faces
    h, w = image_rgb.shape[:2]
    long_side = max(h, w)
    # mediapipe's detector also misses some large, soft faces that it finds once the image has a border
    pad = long_side // 4
    faces = detector.detect(cv2.copyMakeBorder(image_rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0)))
    if faces:
        for lm in faces:
            lm[:, :2] -= pad
        return faces
    if not windows:
        return []
    min_window = max(4 * min_face_px, long_side / 12, 64)
    win = long_side // 2
    while win >= min_window:
        step = win // 2
        found = []  # (landmarks, distance of the face from an inner window edge)
        for y in _window_starts(h, win, step):
            for x in _window_starts(w, win, step):
                tile = image_rgb[y:y + win, x:x + win]
                for lm in detector.detect(tile):
                    b = _bbox(lm)
                    # edges of the window that are also image edges do not cut faces
                    gaps = [b[0] if x > 0 else np.inf, b[1] if y > 0 else np.inf,
                            tile.shape[1] - b[2] if x + win < w else np.inf,
                            tile.shape[0] - b[3] if y + win < h else np.inf]
                    lm = lm.copy()
                    lm[:, :2] += (x, y)
                    found.append((lm, min(gaps)))
        if found:
            # overlapping windows see the same face: keep, per face, the sighting farthest from a window edge
            found.sort(key=lambda f: f[1], reverse=True)
            kept: list[np.ndarray] = []
            for lm, _ in found:
                if all(_iou(_bbox(lm), _bbox(k)) < 0.3 for k in kept):
                    kept.append(lm)
            kept.sort(key=_bbox_area, reverse=True)
            return kept
        win //= 2
    return []
