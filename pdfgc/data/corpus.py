"""Reading a prepared corpus (the output of ``pdfgc prepare``): manifest, clips, random access by tar offsets.

On disk, ``OUT_DIR`` holds:

- ``shard-%06d.tar``: plain tar files in the webdataset convention: every member is ``<key>.<suffix>``, the members
  of one clip are consecutive. Suffixes (``MEMBER_SUFFIXES``):
  ``json`` the clip's metadata (its ClipInfo without shard/members), ``jpgs`` the T aligned 224 crops as
  concatenated JPEG files (quality 95), ``jpgidx.npy`` int64 (T+1,) byte offsets of each JPEG inside ``jpgs``
  (frame i is bytes [idx[i], idx[i+1])), ``mel.npy`` float32 (4T+16, 80) the official normalised log-mel rows
  covering the clip (absent without audio; window t is rows [4t, 4t+20), exactly as at inference),
  ``mesh.npy`` float32 (T,478,3), ``pose.npy`` float32 (T,6), ``eye.npy`` float32 (T,6), ``mouth.npy`` float32 (T,),
  ``valid.npy`` bool (T,). Arrays are .npy files read with ``allow_pickle=False``.
- ``manifest.json``: ``clips`` (one ClipInfo per clip, with each member's [data offset, size] in its shard, so a
  clip is read with a few seeks and no scan), ``totals`` (corpus counts and statistics), ``settings``.
- ``rejected.json``: ``[{source, segment, frames, reason}]`` for every clip or part of a clip left out.
- ``_state/``: per-raw-clip completion records that make ``prepare`` resumable (not needed for reading).

Conventions of the arrays (see ``PreparedClip``): frames are the aligned crops BEFORE PD-FGC's fixed crop-zoom
(``pdfgc.media.preprocess.preprocess`` turns them into network input); mesh, pose, eye and mouth are measured on
those crops with ``pdfgc.evaluation.signals`` (the same functions ``pdfgc evaluate`` uses on generated videos).
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from ..media.spectrogram import mel_windows
from ..official_rules import SIZE as CROP_SIZE
from ..vocabulary import FPS

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REJECTED = "rejected.json"

MEMBER_SUFFIXES = ("json", "jpgs", "jpgidx.npy", "mel.npy", "mesh.npy", "pose.npy", "eye.npy", "mouth.npy",
                   "valid.npy")
POSE_COLUMNS = ("yaw", "pitch", "roll", "tx", "ty", "scale")
EYE_COLUMNS = ("ear_left", "ear_right", "iris_x_left", "iris_y_left", "iris_x_right", "iris_y_right")


@dataclass
class ClipInfo:
    """One entry of manifest.json["clips"]: a prepared clip (one segment of one raw clip)."""

    key: str                    # unique, filesystem-safe, e.g. "liveportrait__driving_d10__000"
    source: str                 # the raw video (or frames folder) path relative to the input root
    num_frames: int             # at 25 fps
    has_audio: bool
    speaker: str | None         # VoxCeleb2 idXXXXX / MEAD speaker / parent folder name
    emotion: str | None         # MEAD label when known ("happy", ...)
    emotion_level: int | None
    shard: str                  # shard file name, e.g. "shard-000003.tar"
    members: dict[str, list[int]]  # member suffix -> [offset_of_data, size] inside the tar
    stats: dict                 # per-clip statistics (see pdfgc.data.prepare.clip_stats)
    split: str = "train"        # "train" | "heldout"
    start_frame: int = 0        # first frame of this segment in the raw clip (at 25 fps)
    layout: str = "generic"     # how the path was read: voxceleb2 | mead | generic | frames

    @property
    def seconds(self) -> float:
        return self.num_frames / FPS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClipInfo":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class PreparedClip:
    info: ClipInfo
    frames: np.ndarray | None       # uint8 (T,224,224,3) aligned crops (before the official crop-zoom); None when
                                    # loaded with with_frames=False
    mel_windows: np.ndarray | None  # float32 (T,1,80,20): the official audio window of each frame (None: no audio)
    mesh: np.ndarray                # float32 (T,478,3) face mesh in crop pixels (x, y, z on x's scale)
    pose: np.ndarray                # float32 (T,6): yaw, pitch, roll (degrees), tx, ty, scale (see POSE_COLUMNS)
    eye: np.ndarray                 # float32 (T,6): EAR left, EAR right, iris x/y left, iris x/y right
    mouth_opening: np.ndarray       # float32 (T,)
    valid: np.ndarray               # bool (T,): face found (invalid frames hold the nearest valid frame's data)
    extra: dict = field(default_factory=dict)  # the clip's json member

    @property
    def num_frames(self) -> int:
        return int(self.info.num_frames)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def npy_load(data: bytes, what: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{what}: corrupt array ({e})") from None


def decode_jpeg(data: bytes | memoryview, what: str = "frame") -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{what}: corrupt JPEG data")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def mel_windows_from_rows(mel_rows: np.ndarray, num_frames: int) -> np.ndarray:
    """(4T+16, 80) mel rows -> (T,1,80,20) windows, by the inference code's own windowing."""
    w = mel_windows(np.asarray(mel_rows, np.float32))
    if w.shape[0] < num_frames:
        raise InputError(f"mel rows cover {w.shape[0]} frames, the clip has {num_frames}")
    return w[:num_frames]


def read_manifest(root: str | os.PathLike) -> dict:
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"prepared corpus {Path(root)}: no {MANIFEST} (run `pdfgc prepare RAW_DIR -o {root}` "
                         "to the end first)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or "clips" not in manifest:
        raise InputError(f"{path}: not a pdfgc prepare manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"{path}: format version {version}, this pdfgc reads version {FORMAT_VERSION}")
    return manifest


class PreparedCorpus:
    """A prepared corpus: ``clips`` from manifest.json, clips loaded by key with a few seeks into their shard.

    ``split``: None for every clip, else "train" or "heldout". Safe to use from DataLoader worker processes
    (every read opens its own file handle).
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if split not in (None, "train", "heldout"):
            raise ValueError(f"split must be None, 'train' or 'heldout', got {split!r}")
        self.split = split
        clips = [ClipInfo.from_dict(c) for c in self.manifest["clips"]]
        self.clips: list[ClipInfo] = [c for c in clips if split is None or c.split == split]
        self._by_key = {c.key: c for c in self.clips}

    # ---- the clip list

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[ClipInfo]:
        return iter(self.clips)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def info(self, key: str) -> ClipInfo:
        try:
            return self._by_key[key]
        except KeyError:
            split = f" (split {self.split})" if self.split else ""
            raise KeyError(f"no clip {key!r} in {self.root}{split}") from None

    @property
    def totals(self) -> dict:
        return self.manifest.get("totals", {})

    @property
    def num_frames(self) -> int:
        return sum(c.num_frames for c in self.clips)

    # ---- reading

    def shard_path(self, info: ClipInfo) -> Path:
        return self.root / info.shard

    def _read_members(self, f, info: ClipInfo, suffixes) -> dict[str, bytes]:
        out = {}
        for s in suffixes:
            if s not in info.members:
                continue
            offset, size = info.members[s]
            f.seek(offset)
            data = f.read(size)
            if len(data) != size:
                raise InputError(f"{self.shard_path(info)}: truncated (member {info.key}.{s})")
            out[s] = data
        return out

    def _open(self, info: ClipInfo):
        path = self.shard_path(info)
        try:
            return open(path, "rb")
        except OSError as e:
            raise InputError(f"prepared corpus {self.root}: cannot open shard {info.shard} "
                             f"({e.strerror or e})") from None

    def _build(self, info: ClipInfo, raw: dict[str, bytes], with_frames: bool = True) -> PreparedClip:
        what = f"{self.shard_path(info)}:{info.key}"
        arr = {s: npy_load(raw[s], f"{what}.{s}") for s in raw if s.endswith(".npy")}
        t = info.num_frames
        frames = None
        if with_frames:
            idx = arr["jpgidx.npy"]
            blob = memoryview(raw["jpgs"])
            frames = np.empty((t, CROP_SIZE, CROP_SIZE, 3), np.uint8)
            for i in range(t):
                frames[i] = decode_jpeg(blob[idx[i]:idx[i + 1]], f"{what} frame {i}")
        mel = mel_windows_from_rows(arr["mel.npy"], t) if "mel.npy" in arr else None
        extra = json.loads(raw["json"]) if "json" in raw else {}
        return PreparedClip(info=info, frames=frames, mel_windows=mel, mesh=arr["mesh.npy"], pose=arr["pose.npy"],
                            eye=arr["eye.npy"], mouth_opening=arr["mouth.npy"], valid=arr["valid.npy"], extra=extra)

    def load_clip(self, key: str, with_frames: bool = True) -> PreparedClip:
        """Everything about one clip (``with_frames=False`` skips decoding the JPEGs: ``frames`` is None)."""
        info = self.info(key)
        suffixes = MEMBER_SUFFIXES if with_frames else tuple(s for s in MEMBER_SUFFIXES if s != "jpgs")
        with self._open(info) as f:
            raw = self._read_members(f, info, suffixes)
        return self._build(info, raw, with_frames)

    def load_frames(self, key: str, indices) -> np.ndarray:
        """uint8 (len(indices),224,224,3): only the requested frames are read and decoded."""
        info = self.info(key)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < -info.num_frames or indices.max() >= info.num_frames):
            raise IndexError(f"frame index out of range for clip {key} ({info.num_frames} frames)")
        indices = indices % max(info.num_frames, 1)
        with self._open(info) as f:
            idx = npy_load(self._read_members(f, info, ("jpgidx.npy",))["jpgidx.npy"], f"{key}.jpgidx.npy")
            base = info.members["jpgs"][0]
            out = np.empty((indices.size, CROP_SIZE, CROP_SIZE, 3), np.uint8)
            for j, i in enumerate(indices):
                f.seek(base + int(idx[i]))
                out[j] = decode_jpeg(f.read(int(idx[i + 1] - idx[i])), f"{self.shard_path(info)}:{key} frame {i}")
        return out

    def load_arrays(self, key: str, names=("mel.npy", "mesh.npy", "pose.npy", "eye.npy", "mouth.npy", "valid.npy")
                    ) -> dict[str, np.ndarray]:
        """Only the named .npy members of one clip (no frames), e.g. for label statistics."""
        info = self.info(key)
        with self._open(info) as f:
            raw = self._read_members(f, info, names)
        return {s: npy_load(b, f"{key}.{s}") for s, b in raw.items()}

    def iter_clips(self, shuffle_seed: int | None = None, with_frames: bool = True) -> Iterator[PreparedClip]:
        """Stream every clip, shard by shard (each shard read front to back); shards and the clips inside each
        shard are shuffled when a seed is given."""
        by_shard: dict[str, list[ClipInfo]] = {}
        for c in self.clips:
            by_shard.setdefault(c.shard, []).append(c)
        shards = sorted(by_shard)
        rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        if rng is not None:
            shards = [shards[i] for i in rng.permutation(len(shards))]
        suffixes = MEMBER_SUFFIXES if with_frames else tuple(s for s in MEMBER_SUFFIXES if s != "jpgs")
        for shard in shards:
            clips = sorted(by_shard[shard], key=lambda c: min(o for o, _ in c.members.values()))
            if rng is not None:
                clips = [clips[i] for i in rng.permutation(len(clips))]
            with self._open(clips[0]) as f:
                for info in clips:
                    yield self._build(info, self._read_members(f, info, suffixes), with_frames)

    def __repr__(self) -> str:
        return f"PreparedCorpus({str(self.root)!r}, {len(self.clips)} clips, {self.num_frames} frames)"
