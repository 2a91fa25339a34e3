"""The mesh-warp fit's corpus (``train.py`` step 1, people apart): a prepared corpus's clips as arrays (meshes,
validity, mel rows, no frames), each with its person (manifest.csv's ``identity_guess``, found through the prepared
corpus's ``raw_root``; else ``ClipInfo.speaker``), its emotion label (from the file names) and whether it is held
out (``heldout_identities.txt`` beside this file, or the corpus's own ``heldout`` split)."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...fileio import write_atomic

HELDOUT_FILE = Path(__file__).with_name("heldout_identities.txt")
EMOTION_LABELS = ("happy", "sad", "angry", "surprised", "disgusted", "fear", "contempt", "neutral")
# file-name words that contain a label but are not one
NOT_LABELS = ("sadtalker",)


@dataclass
class Clip:
    key: str
    identity: str
    label: str | None           # normalised emotion label (pdfgc.controls.explicit), None when unlabelled
    heldout: bool
    mesh: np.ndarray            # (T,478,3) float64
    valid: np.ndarray           # (T,) bool
    mel_rows: np.ndarray | None  # (4T+16,80) float32
    canon: np.ndarray | None = None
    ref: int = 0                # the neutral frame (codes.neutral_reference)
    closed: np.ndarray | None = None  # (478,3) mean canonical mesh of the clip's least open tenth of frames


def emotion_label(*names: str) -> str | None:
    """The emotion label in file names ('M030_front_happy_level3_001.mp4' -> 'happy'; 'surprisegirl' ->
    'surprise'), normalised as pdfgc.controls.explicit does; None when there is none."""
    from ...controls.explicit import normalise_emotion

    for name in names:
        for token in re.split(r"[^a-z]+", str(name).lower()):
            if not token or token in NOT_LABELS:
                continue
            for label in EMOTION_LABELS + ("surprise", "disgust", "anger"):
                if token == label or token.startswith(label) or token.endswith(label):
                    return normalise_emotion(label)
    return None


def read_raw_manifest(corpus_manifest: dict) -> dict[str, dict]:
    """manifest.csv rows of the raw corpus by local_path ({} when the raw corpus has none)."""
    root = corpus_manifest.get("settings", {}).get("raw_root")
    path = Path(root) / "manifest.csv" if root else None
    if path is None or not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {r["local_path"]: r for r in csv.DictReader(f)}


def read_heldout(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def choose_heldout(identities_with_audio, fraction: float = 0.15, seed: int = 0, keep=()) -> list[str]:
    """~fraction of the people with audio, drawn with a fixed seed (people in ``keep`` are never drawn)."""
    pool = sorted(set(identities_with_audio) - set(keep))
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(set(identities_with_audio))))) if pool else 0
    return sorted(pool[i] for i in rng.permutation(len(pool))[:n])


def load_corpus(data: Path, heldout_file: Path | None = None, log=print) -> tuple[list[Clip], list[str]]:
    """Every clip's arrays (no frames), with its person, label and held-out flag; and the held-out people.

    Without a held-out list file, one is chosen (``choose_heldout``; people whose labelled clips the emotion
    shapes rest on, 3 or more, are kept for training) and written to ``heldout_file``."""
    from ...data import PreparedCorpus

    corpus = PreparedCorpus(data)
    raw = read_raw_manifest(corpus.manifest)
    infos = corpus.clips
    ident = {}
    labels = {}
    for info in infos:
        row = raw.get(info.source, {})
        ident[info.key] = row.get("identity_guess") or info.speaker or info.key
        labels[info.key] = info.emotion and emotion_label(info.emotion) or emotion_label(
            info.source, row.get("repo_path", ""))
    heldout_file = Path(heldout_file) if heldout_file is not None else HELDOUT_FILE
    heldout = read_heldout(heldout_file)
    if not heldout:
        with_audio = [ident[i.key] for i in infos if i.has_audio]
        n_labelled: dict[str, int] = {}
        for i in infos:
            if labels[i.key]:
                n_labelled[ident[i.key]] = n_labelled.get(ident[i.key], 0) + 1
        heldout = choose_heldout(with_audio, keep=[p for p, n in n_labelled.items() if n >= 3])
        write_atomic(heldout_file, "# people held out of meshwarp fitting and training (identity_guess of "
                     "manifest.csv); chosen by train.choose_heldout, seed 0\n" + "\n".join(heldout) + "\n")
        log(f"chose {len(heldout)} held-out people -> {heldout_file}")
    held = set(heldout)
    clips = []
    for info in infos:
        a = corpus.load_arrays(info.key, names=("mel.npy", "mesh.npy", "valid.npy"))
        clips.append(Clip(info.key, ident[info.key], labels[info.key],
                          info.split == "heldout" or ident[info.key] in held,
                          a["mesh.npy"].astype(np.float64), a["valid.npy"].astype(bool), a.get("mel.npy")))
    return clips, heldout

