"""Fitting the mesh-warp family from a prepared corpus (``pdfgc prepare``): what ``pdfgc train --config meshwarp``
runs.

    python -m pdfgc.families.meshwarp.train --data DIR --out runs/meshwarp [--speech-cache DIR] [--resume]

1. **People apart.** A clip's person is manifest.csv's ``identity_guess`` (found through the prepared corpus's
   ``raw_root``; ``ClipInfo.source`` is manifest.csv's ``local_path``), else ``ClipInfo.speaker``. The people listed
   in ``heldout_identities.txt`` (beside this file; ``--heldout FILE`` for another list) and the corpus's own
   ``heldout`` split are never fitted or trained on; they give the held-out figures.
2. **Geometry** (``fit_geometry``, ~10 s): per clip the canonical meshes and the neutral frame
   (``codes.neutral_reference``); the mean neutral face, gaze and frontal EAR; PCA bases of the mouth points and of
   the emotion points (offsets from each clip's neutral frame, plus labelled clips' offsets from the same person's
   neutral clip); the least-squares map mouth code -> emotion code (regressed out of the emotion code); the
   per-label expression shapes (``emotion.fit_labels``: labels from the file names; each label's measured mean
   change from the same person's neutral clip, no gain; its mouth part never opens the jaw), resting mouths and
   lid changes. The labels' own directions lead the emotion basis. ``--fer-every N``: fer reads every N-th frame
   of the unlabelled clips and its confident frames join the label directions of the basis as pseudo-labelled
   clips (``fer_clips``; cached in ``OUT/fer_everyN.npz``). Written to ``OUT/geometry.safetensors``.
   ``--audio-from FILE`` stops here and writes ``OUT/meshwarp.safetensors`` with FILE's lips head (the same
   mouth basis).
3. **Speech features** (``lips_train.cache_prepared``): the prepared corpus keeps no sound, so each prepared clip
   with sound is traced to its raw clip (``ClipInfo.source`` under the prepared manifest's ``settings.raw_root``;
   frame f is the raw clip's frame ``start_frame + f``), whose Whisper base block outputs are cached once per raw
   clip in ``--speech-cache DIR`` (default ``OUT/speech``; a cache made by ``lips_train cache`` serves as is, and
   then the raw corpus is not needed).
4. **Lips head** (``lips_train.fit_command``: standardised blocks -> PCA -> ridge over the frame's window, penalty
   and gain by cross-validation over the training people), then its voice-over-music classifier
   (``lips_train.fit_voice_classifier``: silero-vad's probabilities of each raw clip cached in the same folder,
   ``<hash>.silero.npz``, from the raw clip once; with a cache and no raw corpus, clips without them are left out)
   -> ``OUT/meshwarp.safetensors`` (written once, whole),
   ``OUT/lips.json`` (the cross-validation report) and ``OUT/heldout.json`` (``evaluate_lips`` on the held-out
   people). ``--evaluate FILE`` prints the held-out figures of any parameters file instead.
5. **Resuming** (``pdfgc.training.harness``'s policy): the same command with ``--resume`` reuses
   ``OUT/geometry.safetensors`` and every cached feature file (written atomically, one per clip), so a killed run
   loses at most the clip being encoded; the head's fit itself takes seconds. Without ``--resume`` a run folder
   that holds a run is refused; a damaged ``geometry.safetensors`` is an error naming it.

The steps live in their own files: the corpus and people (``corpus.py``), the geometry and label fit
(``geometry_fit.py``), the speech features and the lips head (``lips_train.py``), the held-out figures
(``fit_eval.py``); this file is the entry that runs them in order.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ...errors import InputError, PDFGCError
from ...fileio import atomic_path, write_atomic
from ...training.harness import resume_from
from .corpus import (  # noqa: F401 - the fit's public names, importable from here as before
    EMOTION_LABELS,
    HELDOUT_FILE,
    NOT_LABELS,
    Clip,
    choose_heldout,
    emotion_label,
    load_corpus,
    read_heldout,
    read_raw_manifest,
)
from .fit_eval import SEQ, evaluate_file, evaluate_lips  # noqa: F401
from .geometry_fit import (  # noqa: F401
    FER_LABELS,
    FER_MIN_FRAMES,
    FER_MIN_P,
    _balanced_mean,
    _from_fer,
    _prepare_geometry,
    _strongest,
    fer_clips,
    fer_probabilities,
    fit_geometry,
    label_directions,
)
from .lips_train import lip_gap_direction as gap_direction  # noqa: F401
from .params import load_params, save_params


def train(data: Path, out: Path, resume: bool = False, threads: int = 1, heldout_file: Path | None = None,
          mouth_dim: int = 16, emotion_dim: int = 16, fer_every: int = 0, audio_from: Path | None = None,
          speech_cache: Path | None = None, layers=(2, 3, 4), components: int = 64,
          stop_after: str | None = None, log=print) -> dict | None:
    """The geometry fit, the speech features, the lips head fit -> ``OUT/meshwarp.safetensors`` (module doc).
    ``stop_after`` ('geometry', 'features'; tests) ends the run there, as a kill would."""
    import torch

    from ...data import PreparedCorpus
    from . import lips_train as LT
    from .lips import from_params as head_from_params

    torch.set_num_threads(threads)
    PreparedCorpus(data)   # a missing or broken corpus is one error line, before any run folder exists
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    geom_path, result = out / "geometry.safetensors", out / "meshwarp.safetensors"
    cache = Path(speech_cache) if speech_cache is not None else out / "speech"
    if not resume and result.exists():
        raise InputError(f"{out} already holds a run ({result.name}): add --resume to continue it, "
                         "or use a new --out folder")
    t0 = time.time()
    # the geometry is this fit's checkpoint: continued only with --resume, a damaged one is an error naming it
    found = resume_from(out, [geom_path] if geom_path.exists() else [], resume, load_params, log)
    if found is not None:
        params = found[1]
        log(f"resumed: geometry from {geom_path}")
    else:
        clips, _ = load_corpus(Path(data), heldout_file, log)
        fer = None
        if fer_every > 0:   # fer's reading is the slow part (~90 s): kept in the run folder for a rerun
            fer_cache = out / f"fer_every{fer_every}.npz"
            if fer_cache.is_file():
                with np.load(fer_cache) as z:
                    fer = {k: z[k] for k in z.files}
            else:
                fer = fer_probabilities(Path(data), clips, fer_every, log)
                with atomic_path(fer_cache) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, **fer)
        params = fit_geometry(clips, mouth_dim, emotion_dim, log=log, fer=fer)
        params.info["heldout_people"] = read_heldout(Path(heldout_file) if heldout_file else HELDOUT_FILE)
        save_params(params, geom_path)
    if stop_after == "geometry":
        return None
    if audio_from is not None:   # geometry only: the lips head of an earlier file on the same mouth basis
        old = load_params(audio_from)
        if old.audio_state is None or old.mouth_basis.shape != params.mouth_basis.shape or not np.allclose(
                old.mouth_basis, params.mouth_basis, atol=1e-5):
            raise InputError(f"--audio-from {audio_from}: no lips head on the same mouth basis as this fit")
        with atomic_path(result) as tmp:
            save_params(params, tmp)
            LT.install_head(head_from_params(old), old.info.get("lips", {}), tmp)
        log(f"geometry refitted, lips head of {audio_from} kept -> {result}")
        return {"geometry_only": True}
    LT.cache_prepared(Path(data), cache, log)   # resumable: a clip whose features exist is skipped
    if stop_after == "features":
        return None
    with atomic_path(result) as tmp:
        save_params(params, tmp)
        report = LT.fit_command(Path(data), cache, tmp, out / "lips.json", [int(x) for x in layers], components,
                                compare=False, log=lambda m: log(m.replace(str(tmp), str(result))),
                                heldout_file=heldout_file)
        params = load_params(tmp)
        held = [c for c in LT.load_lip_clips(Path(data), cache, params, heldout_file, log=lambda m: None)
                if c.heldout]
        heldout = evaluate_lips(head_from_params(params), held, cache, params)
        params.info["heldout"] = {k: v for k, v in heldout.items() if k != "per_clip"}
        save_params(params, tmp)
    write_atomic(out / "heldout.json", json.dumps({"heldout": heldout, "lips": {k: v for k, v in report.items()
                                                                                if k != "per_clip_oof"},
                                                   "total_seconds": round(time.time() - t0, 1)}, indent=1,
                                                  default=float))
    log(f"lips head -> {result}; held-out lips r (pooled) {heldout.get('lips_r_pooled')}, mean per clip "
        f"{heldout.get('lips_r_mean')} ({heldout.get('clips')} clips)")
    return heldout



# ---------------------------------------------------------------------------------------------- command


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdfgc.families.meshwarp.train",
                                description="Fit the mesh-warp family (geometry, then the lips head) on a prepared "
                                            "corpus.")
    p.add_argument("--data", required=True, type=Path, help="a `pdfgc prepare` output folder")
    p.add_argument("--out", required=True, type=Path, help="run folder (geometry, speech features, result)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--heldout", type=Path, default=None, help="held-out people list (default: the package's)")
    p.add_argument("--speech-cache", type=Path, default=None, metavar="DIR",
                   help="folder of the raw clips' Whisper features (`lips_train cache`; default OUT/speech): "
                        "missing ones are computed from the raw corpus the prepared one was made from")
    p.add_argument("--layers", default="2,3,4", help="Whisper encoder blocks the lips head reads")
    p.add_argument("--components", type=int, default=64, help="principal axes of the blocks' outputs")
    p.add_argument("--fer-every", type=int, default=0, metavar="N",
                   help="fer reads every N-th frame of the unlabelled clips; its confident frames join the emotion "
                        "label fit (0: labelled clips only)")
    p.add_argument("--audio-from", type=Path, default=None, metavar="FILE",
                   help="refit the geometry only and keep this parameters file's lips head (same mouth basis)")
    p.add_argument("--evaluate", type=Path, default=None, metavar="FILE",
                   help="only print the held-out figures of a parameters file (JSON), no fitting")
    args = p.parse_args(argv)
    try:
        try:
            layers = [int(x) for x in args.layers.split(",")]
        except ValueError:
            raise InputError(f"--layers: comma-separated block numbers, got '{args.layers}'") from None
        if args.evaluate is not None:
            report = evaluate_file(args.data, args.evaluate, args.heldout, args.speech_cache,
                                   log=lambda m: print(m, file=sys.stderr))
            print(json.dumps(report, indent=1))
            return 0
        train(args.data, args.out, resume=args.resume, threads=args.threads, heldout_file=args.heldout,
              fer_every=args.fer_every, audio_from=args.audio_from, speech_cache=args.speech_cache, layers=layers,
              components=args.components)
    except PDFGCError as e:
        print(f"pdfgc: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
