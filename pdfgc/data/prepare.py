"""`pdfgc prepare`: raw talking-face clips -> a prepared corpus for training (format: ``pdfgc.data.corpus``).

Per raw clip (a video, or a numbered frames folder taken at 25 fps), in one worker process:

1. Audio: the clip's own track, else a sidecar file (``clip.wav`` beside ``clip.mp4``; MEAD's ``audio/`` tree),
   decoded to 16 kHz mono (``media.audio_io.load_speech``) and turned into the official normalised log-mel rows
   (``media.spectrogram``, loudness-normalised over the whole clip as at inference). Frame t's audio window is mel
   rows [4t, 4t+20), exactly what ``pdfgc animate`` pairs with output frame t; frames after the last full window
   are dropped. No track, an unreadable or silent one: the clip is kept with ``has_audio`` False (video-only clips
   still train appearance, pose, eyes and emotion).
2. Video: decoded with PyAV and re-timed to 25 fps (``media.video.iter_video_frames``: frame k shows the source
   frame on screen at k/25 s). Pass 1 finds the face in every frame with the inference aligner
   (``media.face.SequenceAligner``: mediapipe tracking, window search for small faces) and compares consecutive
   frames for shot changes.
3. Cuts: a shot change is a large jump of frame content (colour histogram and thumbnail difference, thresholds
   measured on the shipped clips: within clips the Bhattacharyya distance stayed <= 0.18 and the mean grey
   difference <= 25/255, across clips >= 0.21 and >= 22) or of the face (the eyes' midpoint moving more than one
   eye distance, or the eye distance changing by more than 25 %, between consecutive frames: a face that teleports,
   or the tracker switching to another person; in the shipped clips the move stays <= 0.3, except vigorous
   head shaking with motion blur in liveportrait/driving_d12.mp4 at up to 0.82, which is real motion), and a run of
   more than 0.5 s without a face. The clip is split there (faceless runs are dropped); shots shorter than
   ``min_seconds`` are rejected with the reason.
4. Alignment, per shot: the inference rule for a driving video: ONE similarity from the shot's mean eye and mouth
   points, per-frame mouth re-centring smoothed over time (a clip without cuts uses ``SequenceAligner.finalize``
   itself; a shot uses ``shot_matrices``, the same computation on its frames, checked equal in the tests).
   Inputs that are already 224x224 are taken as aligned crops (``align="auto"``, the pipeline's rule; ``always``
   aligns them too, ``never`` only resizes).
5. Pass 2: each frame warped to its 224 crop (``media.face.warp_to_crop``), the 478-point mesh found on the crop
   (mediapipe tracking, restarted per shot), and the crop stored as JPEG (quality 95). Frames where no face was
   found (``valid`` False) take the nearest valid frame's crop and mesh; a shot with fewer than
   ``min_valid_fraction`` valid frames, or whose face is under ``min_face_px`` source pixels, is rejected.
6. Labels from the crop mesh with ``pdfgc.evaluation.signals`` (what ``pdfgc evaluate`` measures on generated
   frames): pose = yaw, pitch, roll in degrees from the rigid fit of the mesh onto the frontal template, then
   tx, ty = (translation - 111.5) / 224 (crop centre 0) and scale / 224 (pixels per template unit over the crop
   size); eye = EAR per eye (image-left eye first), iris x/y per eye as 2*(x - 0.5) and 2*y (0 = iris at the
   middle of the corner line, +-1 = at a corner); mouth opening = inner-lip gap over face height.
7. Shots longer than ``max_seconds`` are cut into equal segments of at most that length; each segment is one
   prepared clip (key ``<raw key>__NNN``).

The main process writes the segments into ``shard-%06d.tar`` (stdlib tarfile, written as ``.tmp`` and renamed when
complete) and, only after a shard is renamed, one completion record per raw clip under ``_state/clips/``. A re-run
skips every recorded clip, deletes temporary and unreferenced shards left by a killed run, and rebuilds
``manifest.json`` / ``rejected.json`` from the records (sorted, no timestamps: an unchanged corpus gives an
identical manifest). ``--shard i/N`` takes every N-th clip so machines can split a corpus; ``merge_corpora``
joins their output folders into one.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..fileio import atomic_path, write_atomic
from .clip import ClipResult, Segment, prepare_clip
from .config import PrepareConfig
from .corpus import FORMAT_VERSION, read_manifest
from .discover import DEFAULT_HELDOUT, discover, parse_shard, read_heldout, select_shard
from .labels import clip_stats, eye_labels, pose_labels
from .shards import ShardWriter, json_dump
from .shots import content_change, find_shots, frame_signature, shot_matrices
from .state import (
    RECORDS_DIR,
    SETTINGS,
    STATE_DIR,
    RecordStore,
    build_manifest,
    check_settings,
    clean_output,
    corpus_totals,
    output_lock,
    prepare_output,
    write_manifest,
)
from .workers import run_clips

__all__ = ["PrepareConfig", "PrepareSummary", "prepare_corpus", "merge_corpora", "prepare_clip", "ClipResult",
           "Segment", "ShardWriter", "build_manifest", "corpus_totals", "find_shots", "shot_matrices",
           "frame_signature", "content_change", "pose_labels", "eye_labels", "clip_stats"]


@dataclass
class PrepareSummary:
    out: Path
    manifest: dict
    discovered: int
    selected: int
    processed: int       # raw clips worked on in this run
    skipped: int         # already done (resume)
    seconds: float

    def describe(self) -> str:
        t = self.manifest["totals"]
        held = t["by_split"].get("heldout", {}).get("clips", 0)
        rej = ", ".join(f"{k} {v}" for k, v in t["rejected_by_code"].items()) or "none"
        return (f"{t['clips']} clips ({held} held out) from {t['raw_clips_kept']} of {t['raw_clips']} raw clips, "
                f"{t['frames']} frames ({t['seconds'] / 60:.1f} min; {t['clips_with_audio']} clips with audio), "
                f"{t['rejected']} rejected ({rej}) -> {self.out}; this run: {self.processed} processed, "
                f"{self.skipped} already done, {self.seconds:.1f} s")

    def check_kept(self) -> None:
        """InputError when no clip was kept: a corpus of nothing is a failed run (exit 2), not a success."""
        t = self.manifest["totals"]
        if t["clips"] == 0 and t["rejected"] > 0:
            rej = ", ".join(f"{v} {k}" for k, v in t["rejected_by_code"].items()) or "no reasons recorded"
            raise InputError(f"prepare kept no clip: all {t['raw_clips']} raw clips were rejected ({rej}; see "
                             f"{self.out / 'rejected.json'})")


def prepare_corpus(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: PrepareConfig | None = None,
                   workers: int = 1, shard: str | tuple[int, int] | None = None, exclude=(),
                   heldout: str | os.PathLike | None = None, frames_folders: bool = True, progress: bool = True,
                   shard_bytes: int = 512 << 20, shard_seconds: float = 120.0,
                   log: Callable[[str], None] | None = None) -> PrepareSummary:
    """Prepare every clip under ``raw_dir`` into ``out_dir`` (resumable; see the module docstring)."""
    t_start = time.perf_counter()
    cfg = cfg or PrepareConfig()
    log = log or (lambda m: print(f"pdfgc: {m}", file=sys.stderr))
    index, count = shard if isinstance(shard, tuple) else parse_shard(shard)
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    raw_dir, out = Path(raw_dir), Path(out_dir)
    heldout_list = read_heldout(heldout if heldout is not None else DEFAULT_HELDOUT)
    clips = discover(raw_dir, exclude=tuple(exclude), frames_folders=frames_folders, skip=(out,))
    if not clips:
        raise InputError(f"no clips found under {raw_dir} (looked for video files "
                         f"{'and numbered frame folders' if frames_folders else ''}"
                         f"{'; --exclude ' + ' '.join(exclude) if exclude else ''})")
    prepare_output(out)
    with output_lock(out):
        check_settings(out, cfg)
        state = RecordStore(out)
        records = state.load()
        clean_output(out, records, log)
        selected = select_shard(clips, index, count)
        todo = [c for c in selected if c.key not in records]
        skipped = len(selected) - len(todo)
        if skipped:
            log(f"resuming: {skipped} of {len(selected)} clips already prepared in {out}")
        processed = run_clips(todo, cfg, out, state, records, workers, progress, shard_bytes, shard_seconds)
        wanted = {c.key for c in clips}
        settings = {"processing": cfg.to_dict(), "raw_root": str(raw_dir.resolve()), "exclude": list(exclude),
                    "heldout": heldout_list, "frames_folders": frames_folders}
        manifest = write_manifest(out, [records[k] for k in sorted(records) if k in wanted], heldout_list, settings)
    return PrepareSummary(out=out, manifest=manifest, discovered=len(clips), selected=len(selected),
                          processed=processed, skipped=skipped, seconds=time.perf_counter() - t_start)


def merge_corpora(inputs: list[str | os.PathLike], out_dir: str | os.PathLike,
                  log: Callable[[str], None] | None = None) -> dict:
    """Join prepared folders (e.g. the ``--shard i/N`` parts) into ``out_dir``: shards are hard-linked (copied
    across file systems) and renumbered, records and manifests combined. The inputs are left as they are."""
    log = log or (lambda m: print(f"pdfgc: {m}", file=sys.stderr))
    if not inputs:
        raise InputError("--merge needs at least one prepared folder")
    out = Path(out_dir)
    ins = [Path(p) for p in inputs]
    manifests = [read_manifest(p) for p in ins]
    processing = manifests[0]["settings"].get("processing")
    for p, m in zip(ins[1:], manifests[1:]):
        if m["settings"].get("processing") != processing:
            raise InputError(f"cannot merge {p}: it was prepared with other settings than {ins[0]}")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"merge output folder {out} is not empty")
    prepare_output(out)
    records: dict[str, dict] = {}
    index = 0
    with output_lock(out):
        for p, m in zip(ins, manifests):
            renamed: dict[str, str] = {}
            for shard in sorted({c["shard"] for c in m["clips"]}):
                name = f"shard-{index:06d}.tar"
                index += 1
                with atomic_path(out / name) as tmp:
                    try:
                        os.link(p / shard, tmp)
                    except OSError:
                        shutil.copyfile(p / shard, tmp)
                renamed[shard] = name
            in_records = RecordStore(p).load() if (p / STATE_DIR / RECORDS_DIR).is_dir() else {}
            by_raw: dict[str, dict] = {}
            for c in m["clips"]:
                raw_key = c["key"].rsplit("__", 1)[0]
                r = by_raw.setdefault(raw_key, {"raw_key": raw_key, "source": c["source"], "segments": [],
                                                "rejected": [], "frames_read": 0, "seconds": 0.0})
                seg = {k: v for k, v in c.items() if k != "split"}
                seg["shard"] = renamed[c["shard"]]
                r["segments"].append(seg)
            for raw_key, r in in_records.items():  # keep the rejections and timings of the source records
                tgt = by_raw.setdefault(raw_key, dict(r, segments=[]))
                tgt["rejected"], tgt["frames_read"], tgt["seconds"] = r["rejected"], r["frames_read"], r["seconds"]
            for raw_key, r in by_raw.items():
                if raw_key in records:
                    raise InputError(f"cannot merge: clip {r['source']} is in more than one input folder")
                records[raw_key] = r
        state = RecordStore(out)
        for r in records.values():
            state.write(r)
        write_atomic(out / STATE_DIR / SETTINGS, json_dump({"format_version": FORMAT_VERSION,
                                                              "processing": processing}), fsync=True)
        settings = dict(manifests[0]["settings"], merged_from=[str(p.resolve()) for p in ins])
        heldout = manifests[0]["settings"].get("heldout", [])
        manifest = write_manifest(out, [records[k] for k in sorted(records)], heldout, settings)
    log(f"merged {len(ins)} folders into {out}: {manifest['totals']['clips']} clips, "
        f"{manifest['totals']['frames']} frames, {index} shards")
    return manifest
