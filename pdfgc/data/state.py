"""Resume state of a prepared folder: completion records, settings check, lock, clean-up, and the manifest rebuilt
from the records (deterministic: sorted, no timestamps)."""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
from pathlib import Path

from ..errors import InputError
from ..fileio import write_atomic
from .config import PrepareConfig
from .corpus import CROP_SIZE, FORMAT_VERSION, FPS, MANIFEST, REJECTED, ClipInfo
from .discover import is_heldout
from .shards import json_dump

STATE_DIR = "_state"
RECORDS_DIR = "clips"
SETTINGS = "settings.json"
SHARD_RE = re.compile(r"^shard-(\d{6,})\.tar$")


class RecordStore:
    """The completion records of an output folder."""

    def __init__(self, out: Path):
        self.out = out
        self.dir = out / STATE_DIR / RECORDS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, dict]:
        records = {}
        for p in sorted(self.dir.glob("*.json")):
            try:
                r = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                p.unlink(missing_ok=True)  # a record is written atomically; anything unreadable is redone
                continue
            records[r["raw_key"]] = r
        return records

    def write(self, record: dict) -> None:
        write_atomic(self.dir / f"{record['raw_key']}.json", json.dumps(record, sort_keys=True), fsync=True)


def clean_output(out: Path, records: dict[str, dict], log) -> int:
    """Delete temporary shards and shards that no record points to (a run killed before recording them)."""
    used = {s["shard"] for r in records.values() for s in r["segments"]}
    removed = 0
    for p in out.iterdir():
        if p.name.endswith(".tar.tmp") or (p.name.startswith(".") and ".tmp-" in p.name):
            p.unlink(missing_ok=True)
            removed += 1
        elif SHARD_RE.match(p.name) and p.name not in used:
            p.unlink(missing_ok=True)
            removed += 1
    if removed:
        log(f"removed {removed} unfinished file(s) left by an interrupted run")
    return removed


def next_shard_index(out: Path) -> int:
    nums = [int(m.group(1)) for p in out.iterdir() if (m := SHARD_RE.match(p.name))]
    return max(nums) + 1 if nums else 0


@contextlib.contextmanager
def output_lock(out: Path):
    path = out / STATE_DIR / "lock"
    f = open(path, "w")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"output folder {out} is in use by another `pdfgc prepare`") from None
        yield
    finally:
        f.close()


def prepare_output(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output folder {out}: cannot create it ({e.strerror or e})") from None
    if not out.is_dir():
        raise InputError(f"output folder {out} is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"output folder {out} is not writable")
    (out / STATE_DIR).mkdir(exist_ok=True)


def check_settings(out: Path, cfg: PrepareConfig) -> None:
    path = out / STATE_DIR / SETTINGS
    wanted = {"format_version": FORMAT_VERSION, "processing": cfg.to_dict()}
    if path.exists():
        have = json.loads(path.read_text())
        if have != wanted:
            diff = [f"{k}: {have.get('processing', {}).get(k)} -> {v}" for k, v in cfg.to_dict().items()
                    if have.get("processing", {}).get(k) != v]
            if have.get("format_version") != FORMAT_VERSION:
                diff.append(f"format_version: {have.get('format_version')} -> {FORMAT_VERSION}")
            raise InputError(f"output folder {out} was prepared with other settings ({'; '.join(diff)}): "
                             "use the same settings to resume, or a new output folder")
    else:
        write_atomic(path, json_dump(wanted), fsync=True)


def build_manifest(records: list[dict], heldout: list[str], settings: dict) -> tuple[dict, list[dict]]:
    """manifest.json and rejected.json contents from completion records (deterministic: sorted, no timestamps)."""
    clips = []
    for r in records:
        for s in r["segments"]:
            c = ClipInfo.from_dict(s)
            c.split = "heldout" if is_heldout(c.source, heldout) else "train"
            clips.append(c.to_dict())
    clips.sort(key=lambda c: c["key"])
    rejected = sorted((dict(x) for r in records for x in r["rejected"]),
                      key=lambda x: (x["source"], x.get("start") or 0))
    totals = corpus_totals(clips, rejected, records)
    manifest = {"format_version": FORMAT_VERSION, "fps": FPS, "crop_size": CROP_SIZE, "settings": settings,
                "totals": totals, "clips": clips}
    return manifest, rejected


def corpus_totals(clips: list[dict], rejected: list[dict], records: list[dict]) -> dict:
    frames = sum(c["num_frames"] for c in clips)
    by_split: dict[str, dict] = {}
    for c in clips:
        d = by_split.setdefault(c["split"], {"clips": 0, "frames": 0})
        d["clips"] += 1
        d["frames"] += c["num_frames"]
    emotions: dict[str, int] = {}
    layouts: dict[str, int] = {}
    for c in clips:
        if c["emotion"]:
            emotions[c["emotion"]] = emotions.get(c["emotion"], 0) + 1
        layouts[c["layout"]] = layouts.get(c["layout"], 0) + 1
    reasons: dict[str, int] = {}
    for x in rejected:
        reasons[x["code"]] = reasons.get(x["code"], 0) + 1
    # frame-weighted pooled mean / std of the per-clip statistics over valid frames
    pooled = {}
    for name in ("yaw", "pitch", "roll", "ear", "mouth"):
        n = m1 = m2 = 0.0
        for c in clips:
            s = c["stats"]
            k = s.get("valid_frames", c["num_frames"])
            mu, sd = s.get(f"{name}_mean"), s.get(f"{name}_std")
            if k and mu is not None and sd is not None and math.isfinite(mu) and math.isfinite(sd):
                n, m1, m2 = n + k, m1 + k * mu, m2 + k * (sd * sd + mu * mu)
        if n:
            mean = m1 / n
            pooled[name] = {"mean": round(mean, 6), "std": round(math.sqrt(max(m2 / n - mean * mean, 0.0)), 6)}
    return {
        "clips": len(clips), "frames": frames, "seconds": round(frames / FPS, 2),
        "hours": round(frames / FPS / 3600, 4),
        "raw_clips": len(records), "raw_clips_kept": sum(1 for r in records if r["segments"]),
        "clips_with_audio": sum(1 for c in clips if c["has_audio"]),
        "frames_with_audio": sum(c["num_frames"] for c in clips if c["has_audio"]),
        "valid_frames": sum(c["stats"].get("valid_frames", c["num_frames"]) for c in clips),
        "speakers": len({c["speaker"] for c in clips if c["speaker"]}),
        "by_split": dict(sorted(by_split.items())), "emotions": dict(sorted(emotions.items())),
        "layouts": dict(sorted(layouts.items())), "rejected": len(rejected),
        "rejected_by_code": dict(sorted(reasons.items())), "label_stats": pooled,
    }


def write_manifest(out: Path, records: list[dict], heldout: list[str], settings: dict) -> dict:
    manifest, rejected = build_manifest(records, heldout, settings)
    write_atomic(out / REJECTED, json_dump(rejected), fsync=True)
    write_atomic(out / MANIFEST, json_dump(manifest), fsync=True)
    return manifest
