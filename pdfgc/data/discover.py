"""Find raw talking-face clips under a root folder, in any layout, and read what the path says about them.

A clip is a video file (mp4, mov, mkv, avi, webm, m4v) or, optionally, a folder of frames: a folder whose image
files are a numbered sequence (``000001.jpg``, ``frame_0001.png``...; 25 fps is assumed). Folders of unrelated
photos (``source_s1.jpg``, ``portrait.png``) are not numbered sequences and are skipped.

Labels from the path (``parse_labels``):
- VoxCeleb2 ``.../idXXXXX/<clip>/NNNNN.mp4``: speaker ``idXXXXX`` (layout ``voxceleb2``).
- MEAD ``.../<speaker>/video/<view>/<emotion>/level_<n>/NNN.mp4``: speaker, camera view, emotion label and level
  (layout ``mead``); its audio lives at ``<speaker>/audio/<emotion>/level_<n>/NNN.m4a`` and is used when the
  video file has no audio track.
- Anything else (layout ``generic`` or ``frames``): the speaker is a VoxCeleb id found in a folder name
  (``vox2_id01228_00309``) or else the clip's parent folder name (which, in a flat folder of many people's
  videos, is a dataset name rather than a person: the layout field says so).
A video with no audio track may take its audio from a file beside it with the same stem (``clip.mp4`` +
``clip.wav``).

``--exclude`` globs are matched (``fnmatch``, where ``*`` also crosses ``/``) against each clip's path relative to
the root, and against folders while walking, so ``'pdfgc/reference_outputs/*'`` or ``'*/reference_outputs'`` skip a
whole folder. Hidden files and folders (``.name``) and the output folder itself are never clips.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
AUDIO_EXTENSIONS = (".wav", ".m4a", ".mp3", ".flac", ".aac", ".ogg")

_VOX_ID = re.compile(r"^id\d{5}$")
_VOX_ID_IN_NAME = re.compile(r"(?:^|[_\-.])(id\d{5})(?:$|[_\-.])")
_MEAD_LEVEL = re.compile(r"^level_(\d+)$")
_NUMBERED = re.compile(r"^(.*?)(\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class RawClip:
    """One raw clip found under the root."""

    source: str                      # path relative to the root, '/'-separated (the clip's identity)
    path: Path                       # absolute path (file, or folder of frames)
    kind: str                        # "video" | "frames"
    key: str                         # filesystem- and webdataset-safe base key (no dots), unique in the corpus
    layout: str                      # "voxceleb2" | "mead" | "generic" | "frames"
    speaker: str | None = None
    emotion: str | None = None
    emotion_level: int | None = None
    view: str | None = None          # MEAD camera view ("front", "left_30", ...)
    audio_candidates: tuple[Path, ...] = field(default=())  # sidecar audio, used when the video has no track


def parse_labels(source: str, kind: str = "video") -> dict:
    """Layout and labels from a clip's relative path (see the module docstring)."""
    parts = source.split("/")
    dirs = parts[:-1]
    labels: dict = {"layout": "frames" if kind == "frames" else "generic", "speaker": None, "emotion": None,
                    "emotion_level": None, "view": None}
    # MEAD: <speaker>/video/<view>/<emotion>/level_<n>/NNN.mp4
    if kind == "video" and len(dirs) >= 5 and dirs[-4] == "video" and _MEAD_LEVEL.match(dirs[-1]):
        labels.update(layout="mead", speaker=dirs[-5], view=dirs[-3], emotion=dirs[-2].lower(),
                      emotion_level=int(_MEAD_LEVEL.match(dirs[-1]).group(1)))
        return labels
    # VoxCeleb2: idXXXXX/<clip>/NNNNN.mp4
    if kind == "video" and len(dirs) >= 2 and _VOX_ID.match(dirs[-2]):
        labels.update(layout="voxceleb2", speaker=dirs[-2])
        return labels
    # a VoxCeleb id inside a folder or file name (frame dumps such as vox2_id01228_00309/)
    for name in reversed(parts):
        m = _VOX_ID_IN_NAME.search(name)
        if m:
            labels["speaker"] = m.group(1)
            return labels
    # the clip's parent folder (for a frames folder, the folder holding it); None at the top level
    labels["speaker"] = parts[-2] if len(parts) >= 2 else None
    return labels


def base_key(source: str, kind: str = "video") -> str:
    """'liveportrait/driving_d10.mp4' -> 'liveportrait__driving_d10' (no dots: webdataset splits keys on them)."""
    parts = source.split("/")
    if kind == "video":
        parts[-1] = os.path.splitext(parts[-1])[0]
    return "__".join(_UNSAFE.sub("_", part).strip("_") or "_" for part in parts)


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(rel + "/", pat) for pat in patterns)


def _numbered_sequence(names: list[str]) -> bool:
    """True when every stem is <common prefix><digits> (a frame dump), with at least two frames."""
    if len(names) < 2:
        return False
    prefixes = set()
    for n in names:
        m = _NUMBERED.match(os.path.splitext(n)[0])
        if not m:
            return False
        prefixes.add(m.group(1))
    return len(prefixes) == 1


def _audio_candidates(path: Path, labels: dict) -> tuple[Path, ...]:
    out = [path.with_suffix(ext) for ext in AUDIO_EXTENSIONS]
    if labels["layout"] == "mead":
        # <speaker>/video/<view>/<emotion>/level_n/NNN.mp4 -> <speaker>/audio/<emotion>/level_n/NNN.m4a
        level, emotion, speaker_dir = path.parent, path.parent.parent, path.parents[4]
        out += [speaker_dir / "audio" / emotion.name / level.name / (path.stem + ext) for ext in AUDIO_EXTENSIONS]
    return tuple(p for p in out if p.is_file())


def discover(root: str | os.PathLike, exclude: tuple[str, ...] | list[str] = (), frames_folders: bool = True,
             skip: tuple[str | os.PathLike, ...] = ()) -> list[RawClip]:
    """All clips under ``root``, sorted by relative path. ``skip``: folders never entered (e.g. the output)."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"raw data folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"raw data folder {root} is not a folder")
    root = root.resolve()
    patterns = tuple(exclude)
    skip_real = {Path(s).resolve() for s in skip}
    found: list[tuple[str, Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        rel_dir = d.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".")
                             and (d / n).resolve() not in skip_real
                             and not _excluded(f"{rel_dir}/{n}" if rel_dir else n, patterns))
        files = sorted(n for n in filenames if not n.startswith("."))
        videos = [n for n in files if n.lower().endswith(VIDEO_EXTENSIONS)]
        for n in videos:
            rel = f"{rel_dir}/{n}" if rel_dir else n
            if not _excluded(rel, patterns):
                found.append((rel, d / n, "video"))
        images = [n for n in files if n.lower().endswith(FRAME_EXTENSIONS)]
        if frames_folders and rel_dir and not videos and _numbered_sequence(images):
            found.append((rel_dir, d, "frames"))
    found.sort(key=lambda f: f[0])
    keys = [base_key(rel, kind) for rel, _, kind in found]
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    clips = []
    for (rel, path, kind), key in zip(found, keys):
        if counts[key] > 1:  # 'a/b.mp4' and 'a/b.mov', or names that differ only in unsafe characters
            key = f"{key}_{hashlib.blake2b(rel.encode(), digest_size=3).hexdigest()}"
        labels = parse_labels(rel, kind)
        audio = _audio_candidates(path, labels) if kind == "video" else ()
        clips.append(RawClip(source=rel, path=path, kind=kind, key=key, audio_candidates=audio, **labels))
    return clips


def parse_shard(spec: str | None) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N; None -> (0, 1)."""
    if spec is None:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise InputError(f"--shard {spec!r}: expected i/N with 0 <= i < N, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def select_shard(clips: list[RawClip], index: int, count: int) -> list[RawClip]:
    """Every ``count``-th clip starting at ``index`` (of the sorted list): machines split one corpus this way."""
    return clips[index::count]


def read_heldout(path: str | os.PathLike) -> list[str]:
    """Held-out entries: one relative path (or fnmatch glob) per line; '#' starts a comment."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise InputError(f"held-out list {p}: cannot read ({e.strerror or e})") from None
    return [s for s in (line.split("#", 1)[0].strip() for line in lines) if s]


def is_heldout(source: str, heldout: list[str]) -> bool:
    return any(source == h or fnmatch.fnmatchcase(source, h) for h in heldout)


DEFAULT_HELDOUT = Path(__file__).with_name("heldout.txt")
