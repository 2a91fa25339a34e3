"""One portrait plus per-factor sources -> a talking-head mp4. The single entry point:

    from pdfgc import TalkingHeadPipeline
    pipe = TalkingHeadPipeline.from_default()           # or .from_pretrained(path) / .from_official(folder)
    pipe("portrait.jpg", audio="speech.mp3", pose="head.mp4", eyes="eyes/", emotion="smile.mp4", output="out.mp4")

The pipeline owns I/O, cropping, the frame loop and muxing; the tensor-level steps belong to the model's family
(pdfgc/families/: which encoder reads which source, the inference rules, explicit controls, rendering). It works in two
phases so memory stays flat: (1) every factor's per-frame code is computed (codes are a few kB per frame), (2) frames
are rendered in small batches and streamed to the encoder. With more than one thread a family may measure the portrait
and its driving clips at once (`face_jobs_at_once`) and render batches on worker threads while the main thread
encodes (`render_threads`); the codes and frames are those of the serial path (tests/test_speed.py).

Factor sources (each factor is independent):
  lips:     "audio" (default) | "still" (the portrait's mouth) | "off" (zero code) | a video/folder of a speaking mouth
  pose, eyes, blink, gaze, emotion: a video file | a folder of frames | an image | "still" | "off"
  `eyes` sets both blink and gaze; `blink`/`gaze` override it per part of the eye code.
  pose, blink also "auto": generated from the speech (families/meshwarp/motion.py), seeded by `motion_seed`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from .errors import InputError
from .families import Codes, ModelFamily, family_for
from .families.base import progress_bar
from .media import preprocess as pp
from .media.alignment import align_portrait, looks_like_aligned_crop
from .media.audio_io import AudioTrack, check_finite, decode_speech, is_silent
from .media.driving import open_driving
from .media.images import load_image_rgb, read_image_rgb
from .media.pasteback import paste_back, warp_to_crop
from .media.spectrogram import num_output_frames, rms_gain, speech_windows, speech_windows_range
from .media.video import VideoWriter
from .official_rules import crop_zoom_matrix, frame_indices
from .options import LAYOUTS, SPECIAL_SOURCES, AnimateOptions, factor_sources  # noqa: F401 (re-exported)
from .options import check_options as _check_options
from .options import is_special_source as _is_special
from .runtime import Precision, resolve_device, set_threads, tune_malloc
from .vocabulary import ALIGN_MODES, AUTO, FPS
from .weights import load_model

log = logging.getLogger("pdfgc")



@dataclass
class Portrait:
    original: np.ndarray          # the photo as read (RGB uint8)
    crop: np.ndarray              # the aligned 224 crop (before the official crop-zoom)
    net_input: np.ndarray         # what the PD-FGC encoders see (after crop-zoom when the family uses it), uint8
    to_net: np.ndarray            # (2,3) affine: original pixels -> network-input pixels
    aligned_by_us: bool
    num_faces: int = 1
    to_crop: np.ndarray | None = None  # (2,3) affine: original pixels -> 224-crop pixels


@dataclass
class Speech:
    """Speech decoded once, as 16 kHz mono for the lips (the mp4's sound track is streamed from `path` while the
    video is written: the native track is never held whole)."""

    name: str
    wav16k: np.ndarray | None          # (n,) float32; with --max-frames only the part those frames need; None once
                                       # `released` (see `samples()`)
    path: Path | None = None           # the file (None for an array input: the result has no sound)
    mean_square: float | None = None   # over the WHOLE track (the official loudness normalisation's)
    total_samples: int | None = None   # the whole track's length at 16 kHz

    def samples(self) -> np.ndarray:
        """The 16 kHz samples (decoded again from `path` if `released`)."""
        if self.wav16k is None:
            self.wav16k = decode_speech(self.path)[0]
        return self.wav16k

    def released(self) -> "Speech":
        """The same speech without its samples in memory (a file input: they are decoded again when asked for)."""
        return dataclasses.replace(self, wav16k=None) if self.path is not None else self

    @property
    def num_frames(self) -> int:
        """Output frames of the whole track (official: floor((ceil(L/160)+7)/4) - 4)."""
        return num_output_frames(self.wav16k.size if self.total_samples is None else self.total_samples)

    @property
    def gain(self) -> float:
        """The official loudness normalisation's gain (`spectrogram.rms_gain` of the whole track)."""
        if self.mean_square is None:
            return rms_gain(self.wav16k)
        return 0.1 / max(1e-4, float(np.sqrt(self.mean_square)))


@dataclass
class CodePlan:
    """Every per-frame code of one animation, before rendering (what `pdfgc verify-official` checks)."""

    num_frames: int
    appearance: object            # the family's portrait encoding (`encode_portrait`): what `render` reads of it
    mouth: torch.Tensor           # (T, mouth) final (scaled, smoothed, controlled)
    emotion: torch.Tensor         # (T, emotion)
    eye: torch.Tensor             # (T, eye)
    pose: torch.Tensor            # (T, pose)
    speech: Speech | None = None               # the audio (mel windows are computed from it in chunks)
    audio_mouth_raw: torch.Tensor | None = None
    motion_raw: dict = field(default_factory=dict)   # source key -> Codes over the clip's frames
    factor_index: dict = field(default_factory=dict)  # factor -> (source key, per-output-frame clip indices)
    panels: dict = field(default_factory=dict)        # factor -> (clip crops, indices) for the panel layout

    @property
    def mel_windows(self) -> np.ndarray | None:
        """All official mel windows (T,1,80,20) of the plan's frames (computed on demand; for verification)."""
        if self.speech is None:
            return None
        return speech_windows_range(self.speech.samples(), 0, self.num_frames, self.speech.gain)


@dataclass
class AnimationResult:
    output: Path | None
    num_frames: int
    fps: int
    seconds: float
    plan: CodePlan


class TalkingHeadPipeline:
    """The pipeline over one model; `model` is any loaded model (PD-FGC networks or the mesh-warp default), its
    family (pdfgc/families/) says how its codes are made and rendered."""

    def __init__(self, model, device: str | None = "auto", threads: int | None = None):
        tune_malloc()
        self.threads = set_threads(threads)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.family = family_for(self.model, self.device)
        if self.render_workers() >= self.threads:
            # the pipeline's own threads fill every core it was given (frames render on one thread each, faces are
            # measured side by side): OpenCV's thread pool on top only costs CPU (its workers wake for every remap
            # and blur: the warp took ~20 % more CPU a frame with it), so OpenCV runs on the calling thread; the
            # pixels are the same (benchmarks/results/speed_s30.md)
            cv2.setNumThreads(1)
        if not model.config.trained:
            warn_untrained(model)

    # ---- construction ---------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, **kw) -> "TalkingHeadPipeline":
        """Any weights file of ours (either family); see `pdfgc.weights.load_model`."""
        return cls(load_model(weights=path), **kw)

    @classmethod
    def from_official(cls, folder, **kw) -> "TalkingHeadPipeline":
        return cls(load_model(official=folder), **kw)

    @classmethod
    def from_default(cls, **kw) -> "TalkingHeadPipeline":
        return cls(load_model(), **kw)

    # ---- inputs --------------------------------------------------------------------------------------------
    def load_portrait(self, source, align: str = "auto") -> Portrait:
        """A photo (any size; EXIF rotation applied) or an aligned 224 crop -> the appearance input."""

        if isinstance(source, np.ndarray):
            image, name = np.ascontiguousarray(source[..., :3]).astype(np.uint8), "portrait array"
        else:
            name = str(source)
            image = load_image_rgb(source)
            if image.shape[:2] == (pp.SIZE, pp.SIZE) or align == "never":
                image = read_image_rgb(source, "portrait")  # the official reader (cv2): aligned crops match it
        if align not in ALIGN_MODES:
            raise InputError(f"unknown align mode '{align}' ({', '.join(ALIGN_MODES)})")
        use_as_crop = align == "never" or (align == "auto" and looks_like_aligned_crop(image))
        num_faces = 1
        if use_as_crop:
            crop = image if image.shape[:2] == (pp.SIZE, pp.SIZE) else _resize(image, pp.SIZE)
            sy, sx = pp.SIZE / image.shape[0], pp.SIZE / image.shape[1]
            to_crop = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
        else:
            fa = align_portrait(image, source=name)
            crop, to_crop, num_faces = warp_to_crop(image, fa), fa.matrix, fa.num_faces
        official = self.family.official_crop
        net = pp.official_crop_zoom(crop) if official else crop
        to_net = _compose(crop_zoom_matrix() if official else np.eye(3)[:2], to_crop)
        return Portrait(image, crop, net, to_net, not use_as_crop, num_faces, np.asarray(to_crop, np.float64))

    def load_speech(self, audio, require_speech: bool = True, max_frames: int | None = None) -> Speech:
        """An audio file (any format, rate, channels; a video's sound track) or a 16 kHz mono array, decoded once
        (with `max_frames`, only the part those frames need is kept)."""
        return load_speech(audio, require_speech, max_frames)

    # ---- phase 1: codes --------------------------------------------------------------------------------------
    def plan(self, portrait, audio=None, options: AnimateOptions | None = None, **overrides) -> CodePlan:
        """Compute every per-frame code (no rendering).

        portrait: a path, an RGB array or a `Portrait` (`load_portrait`); audio: a path, a 16 kHz mono array, a
        `Speech` or None; options / overrides: `AnimateOptions` fields. Returns the `CodePlan`, whose code
        tensors are ordinary tensors the caller may edit in place before `render`.
        """
        # 1. check inputs: option values, explicit controls (and what they need) before any work
        opt = _with(options, overrides)
        _check_options(opt, audio=audio)  # once: options the caller checked already (unchanged) pass through
        plan = self._plan(portrait, audio, opt)
        # `_plan` runs in inference mode, whose tensors refuse in-place edits outside it: hand out copies
        for name in ("mouth", "emotion", "eye", "pose", "audio_mouth_raw"):
            t = getattr(plan, name)
            if t is not None:
                setattr(plan, name, t.clone())
        return plan

    @torch.inference_mode()
    def _plan(self, portrait, audio, opt: AnimateOptions, will_render: bool = False) -> CodePlan:
        """`plan` with options already checked (`__call__` checks them once, with the audio as it was given);
        `will_render`: frames follow (a family may then make its render set-ups beside the encoders)."""
        fam = self.family
        opt = _auto_blink(opt)
        fam.preflight_controls(opt)
        if opt.pose == AUTO and not fam.generates_pose:
            raise InputError(f"--pose auto: the {fam.name} model's pose code is not in physical units (its "
                             "pose_code_units), so generated head motion cannot drive it; use a pose video, or "
                             "--yaw/--pitch/--roll")
        self._warm_up(opt, audio)
        prec = Precision(opt.precision, self.device)
        factors = factor_sources(opt)
        # 2. the portrait
        portrait = portrait if isinstance(portrait, Portrait) else self.load_portrait(portrait, opt.align)
        # a family whose portrait and clips are measured each on its own graph (mesh-warp: a mediapipe graph per
        # clip) measures up to `face_jobs_at_once` of them at a time when the pipeline has more than one thread: the
        # portrait from now on, while the audio is decoded and the clips are read
        graphs = int(fam.face_jobs_at_once) if self.threads > 1 else 1
        pool = ThreadPoolExecutor(graphs, thread_name_prefix="pdfgc-faces") if graphs > 1 else None
        lips_pool = lips_job = None
        if pool is not None:
            def portrait_and_setups():
                appearance, still = fam.encode_portrait(portrait, prec, opt)
                if will_render:   # the portrait's set-ups for render, on the same thread as soon as it is encoded
                    fam.prepare_portrait(appearance, opt)
                return appearance, still
            portrait_job = pool.submit(portrait_and_setups)
        try:
            # 3. the audio, decoded once; it fixes the length (else the lips video, else --duration)
            speech = None
            if audio is not None:
                speech = audio if isinstance(audio, Speech) else self.load_speech(audio, factors["lips"] == "audio",
                                                                                  opt.max_frames)
                num_frames = speech.num_frames
            elif opt.lips == "audio" or _is_special(opt.lips):
                if opt.duration is None:
                    raise InputError("no audio given: pass an audio file, take lips from a video (--lips VIDEO), "
                                     "or set --duration with --lips still/off")
                num_frames = max(1, int(round(opt.duration * FPS)))
                if opt.lips == "audio":
                    factors["lips"] = "still"
            else:
                num_frames = None
            if opt.max_frames is not None and num_frames is not None:
                num_frames = min(num_frames, opt.max_frames)
            # 4. open the driving sources: each distinct path opened once, whatever factors share it
            clips, factor_index, panels = {}, {}, {}
            if num_frames is None:  # length follows the lips video
                key = str(factors["lips"])
                clips[key] = open_driving(key, None, opt.align, fam.official_crop, role="lips video",
                                          progress=opt.progress)
                num_frames = clips[key].num_frames - opt.driving_skip
                if opt.max_frames is not None:
                    num_frames = min(num_frames, opt.max_frames)
                if num_frames < 1:
                    raise InputError(f"lips video {key}: too short ({clips[key].num_frames} frames)")
            need = num_frames + opt.driving_skip
            # the audio (a family whose speech encoder shares nothing with its face encoders runs it on a thread
            # beside them), started as soon as the audio fixes the length: while the clips are read and measured
            if factors["lips"] == "audio" and fam.speech_beside_faces:
                lips_pool = ThreadPoolExecutor(1, thread_name_prefix="pdfgc-speech")
                lips_job = lips_pool.submit(fam.encode_speech, speech, num_frames, prec, opt.batch_size)

            def encode_clip(key, clip):
                used = sorted({int(i) for f, (k, idx) in factor_index.items() if k == key for i in idx})
                want_mouth = any(k == key and f == "lips" for f, (k, _) in factor_index.items())
                return fam.encode_clip(clip, used, want_mouth, prec, opt, progress=opt.progress)

            # with a pool, each clip is measured as soon as its last factor is read, while the next clip is decoded
            last_use = {str(src): f for f, src in factors.items() if not _is_special(src)}
            clip_jobs = {}
            for factor, src in factors.items():
                if _is_special(src):
                    continue
                key = str(src)
                if key not in clips:
                    clip_need = need if opt.driving_mode != "strict" else None
                    clips[key] = open_driving(key, clip_need, opt.align, fam.official_crop, role=f"{factor} source",
                                              progress=opt.progress)
                clip = clips[key]
                skip = 0 if clip.kind == "image" else opt.driving_skip
                idx = frame_indices(clip.num_frames, num_frames, opt.driving_mode, skip,
                                    source=f"{factor} source {key}")
                factor_index[factor] = (key, idx)
                panels[factor] = (clip.crops, idx)
                if pool is not None and last_use[key] == factor:
                    clip_jobs[key] = pool.submit(encode_clip, key, clip)
            # 5. encode: the portrait's appearance and own codes once (started above), each clip's used frames once,
            # the audio (started above)
            if pool is not None:
                appearance, still = portrait_job.result()   # errors in the serial order: the portrait's first
                motion_raw = {key: clip_jobs[key].result() for key in clips}   # errors in the serial order
            else:
                appearance, still = fam.encode_portrait(portrait, prec, opt)
                motion_raw = {key: encode_clip(key, clip) for key, clip in clips.items()}
        except BaseException:
            if lips_pool is not None:   # a bad input leaves nothing running: the speech ends before the error
                lips_pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            if pool is not None:   # after an error too: jobs not started are dropped, running ones end first
                pool.shutdown(wait=True, cancel_futures=True)
            if lips_pool is not None:
                lips_pool.shutdown(wait=False)
        dims = fam.code_dims

        def per_frame(factor: str, code: str) -> torch.Tensor:
            src = factors[factor]
            if src == "off" or src is None:
                return torch.zeros(num_frames, dims[code])
            if src == "still":
                return getattr(still, code).float().cpu().expand(num_frames, dims[code]).clone()
            key, idx = factor_index[factor]
            return getattr(motion_raw[key], code)[torch.from_numpy(idx)]

        audio_mouth_raw = None
        if factors["lips"] == "audio":
            audio_mouth_raw = (lips_job.result() if lips_job is not None
                               else fam.encode_speech(speech, num_frames, prec, opt.batch_size))
            mouth = audio_mouth_raw
        else:
            mouth = per_frame("lips", "mouth")
        # 6. the model's inference rules: multipliers and temporal smoothing
        # smoothing is linear: filter first, then scale in place (one (T, mouth) copy instead of two)
        if opt.mouth_smoothing and factors["lips"] not in ("off", "still"):
            mouth = fam.smooth("mouth", mouth)
        k = _or(opt.mouth_intensity, fam.intensity("mouth"))
        mouth = mouth * k if mouth is audio_mouth_raw else mouth.mul_(k)  # the plan keeps the raw codes unscaled
        blink_mask = torch.zeros(dims["eye"])
        blink_mask[list(fam.blink_dims)] = 1
        eye = (per_frame("blink", "eye") * _or(opt.blink_intensity, fam.intensity("blink")) * blink_mask
               + per_frame("gaze", "eye") * _or(opt.gaze_intensity, fam.intensity("gaze")) * (1 - blink_mask))
        emotion = per_frame("emotion", "emotion") * _or(opt.emotion_intensity, fam.intensity("emotion"))
        if factors["pose"] == AUTO:  # generated from the speech (already smooth: fitted on box-filtered pose)
            pose = fam.auto_pose(speech, num_frames, opt.motion_seed, still)
        else:
            pose = per_frame("pose", "pose")
        if opt.pose_smoothing and factors["pose"] not in ("off", "still", AUTO):
            pose = fam.smooth("pose", pose)
        pose = pose * opt.pose_intensity
        # 7. explicit controls override their own part of the codes (each family's apply_controls: precedence)
        codes = fam.apply_controls(opt, num_frames, Codes(mouth=mouth, emotion=emotion, eye=eye, pose=pose),
                                   appearance, still, prec)
        return CodePlan(num_frames, appearance, codes.mouth.contiguous(), codes.emotion.contiguous(),
                        codes.eye.contiguous(), codes.pose.contiguous(), speech, audio_mouth_raw, motion_raw,
                        factor_index, panels)

    def _warm_up(self, opt: AnimateOptions, audio) -> None:
        """The family's input-free set-ups on a thread (`warm_up`, mesh-warp: the speech encoder's weights) when the
        pipeline has more than one thread and the job has audio; idempotent."""
        if self.threads > 1 and audio is not None:
            self.family.warm_up(opt)

    def control_mapping(self, path=None):
        """The fitted control mapping of the model (PD-FGC: `path`, else `<weights stem>.controls.json` beside the
        weights), None when there is none or the family needs none; refused if fitted for other weights."""
        return self.family.control_mapping(path)

    # ---- phase 2: frames ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def render(self, plan: CodePlan, options: AnimateOptions | None = None, start: int = 0, stop: int | None = None,
               progress: Callable[[int], None] | None = None):
        """Yield (frame slice, frames) batch by batch, in order; frames are tensors (B,3,S,S): float in [-1,1] from
        the PD-FGC networks (S = 224), uint8 0..255 from the mesh-warp default (S = the portrait's own crop
        resolution, up to 512: the warp's pixels as they are). A family with `render_threads` renders the next
        batches on worker threads while the caller uses this one (`render_workers()`)."""
        opt = options or AnimateOptions()
        prec = Precision(opt.precision, self.device)
        stop = plan.num_frames if stop is None else stop
        bs = self.family.batch_size("generator", opt.precision, opt.batch_size)
        slices = [slice(s, min(s + bs, stop)) for s in range(start, stop, bs)]
        workers = min(self.render_workers(), len(slices))
        if workers <= 1:
            for sl in slices:
                yield sl, self.family.render(plan, sl, prec, opt.batch_size)
                if progress:
                    progress(sl.stop - sl.start)
            return
        # batches rendered on `workers` threads, `ahead` batches in flight, handed out in order (the caller composes
        # and encodes meanwhile); the family's lazy per-plan set-ups are made first, on this thread
        self.family.prepare_render(plan)
        ahead = 2 * workers
        pool = ThreadPoolExecutor(workers, thread_name_prefix="pdfgc-render")
        try:
            jobs = {}
            for i, sl in enumerate(slices):
                for j in range(i, min(i + ahead, len(slices))):
                    if j not in jobs:
                        jobs[j] = pool.submit(self.family.render, plan, slices[j], prec, opt.batch_size)
                yield sl, jobs.pop(i).result()
                if progress:
                    progress(sl.stop - sl.start)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def render_workers(self) -> int:
        """Threads that render frames (the family's `render_threads`: 0 = one per thread of the pipeline)."""
        n = self.family.render_threads
        return self.threads if n == 0 else max(1, min(int(n), self.threads))

    def __call__(self, portrait, audio=None, output: str | os.PathLike | None = None,
                 options: AnimateOptions | None = None, on_progress: Callable[[int, int], None] | None = None,
                 **overrides) -> AnimationResult:
        """Animate `portrait` and write `output` (mp4, H.264 + AAC, 25 fps); see the module doc for sources.
        `on_progress(frames_written, total)` is called after each written batch (the web UI's progress bar)."""
        # 1. check inputs (before anything is read or written)
        opt = _with(options, overrides)
        out_path = Path(output) if output is not None else None
        _check_options(opt, audio=audio, output=out_path, inputs=[portrait])
        self._warm_up(opt, audio)
        # 2. load the portrait, 3. decode the audio once (lips and sound track)
        portrait_obj = self.load_portrait(portrait, opt.align) if not isinstance(portrait, Portrait) else portrait
        h, w = portrait_obj.original.shape[:2]
        if opt.layout in ("pasteback", "auto") and h * w > 16e6:   # (auto pastes back into every photo)
            log.warning("pasting back into a %dx%d photo: large frames encode slowly",
                        portrait_obj.original.shape[1], portrait_obj.original.shape[0])
        speech = None
        if audio is not None:
            speech = audio if isinstance(audio, Speech) else self.load_speech(audio, _lips_need_speech(opt),
                                                                              opt.max_frames)
        # 4-7. sources, encoders, inference rules, explicit controls
        plan = self._plan(portrait_obj, speech, opt, will_render=out_path is not None)
        if out_path is None:
            return AnimationResult(None, plan.num_frames, FPS, plan.num_frames / FPS, plan)
        track = None
        if speech is not None and speech.path is not None:
            # --max-frames cut the video short: the sound track ends with it (else the whole audio is kept)
            cut = plan.num_frames < speech.num_frames
            track = AudioTrack(speech.path, max_seconds=plan.num_frames / FPS if cut else None)
        elif speech is None and not _is_special(opt.lips):
            try:
                track = AudioTrack(opt.lips, source="lips video", max_seconds=plan.num_frames / FPS)
            except InputError:
                track = None  # a silent lips video gives a silent result
        if plan.speech is not None:  # the codes are planned: rendering needs no samples (memory flat in length)
            plan.speech = speech = plan.speech.released()
        # 8. render, 9. compose the layout, 10. mux (frames stream to the encoder; the file appears atomically)
        composer = FrameComposer(self.family, portrait_obj, plan, opt.layout)
        bar = progress_bar(plan.num_frames, opt.progress)
        written = 0

        def advance(n: int) -> None:
            nonlocal written
            written += n
            if bar:
                bar.update(n)
            if on_progress:
                on_progress(written, plan.num_frames)
        try:
            preset = opt.preset or ("veryfast" if opt.precision == "fast" else self.family.default_preset)
            with VideoWriter(out_path, fps=FPS, audio=track, crf=opt.crf,
                             preset=preset) as writer:
                for sl, images in self.render(plan, opt, progress=advance):
                    writer.write_batch(composer(sl, images))
        finally:
            if bar:
                bar.close()
        return AnimationResult(out_path, plan.num_frames, FPS, plan.num_frames / FPS, plan)


class FrameComposer:
    """Rendered faces -> output frames in the chosen layout (`family`: the pipeline's model family, or a model)."""

    def __init__(self, family, portrait: Portrait, plan: CodePlan, layout: str):
        if not isinstance(family, ModelFamily):
            family = family_for(family, torch.device("cpu"))
        if layout == "auto":  # a photo (not an aligned crop) comes back at its own size, as LivePortrait does; the
            # official networks keep their documented 224 crop (issue 19: a tight photo's crop reaches past its edge)
            layout = "pasteback" if portrait.aligned_by_us and not family.official_crop else "result"
        self.family, self.portrait, self.plan, self.layout = family, portrait, plan, layout

    def __call__(self, sl: slice, images: torch.Tensor) -> np.ndarray:
        if self.layout == "result":
            return pp.to_uint8(images)
        if self.layout == "panels":
            # official strip: appearance | generated | pose | expression | eye, each as the official uint8 cast
            faces = pp.to_uint8_truncated(images)
            size = faces.shape[1]
            rows = []
            for j, t in enumerate(range(sl.start, sl.stop)):
                parts = [self.family.appearance_panel(self.portrait), faces[j]]
                for factor in ("pose", "emotion", "gaze"):
                    crops, idx = self.plan.panels.get(factor, (None, None))
                    if factor == "gaze" and crops is None:
                        crops, idx = self.plan.panels.get("blink", (None, None))
                    parts.append(np.asarray(crops[idx[t]]) if crops is not None else np.zeros_like(faces[j]))
                rows.append(np.concatenate([p if p.shape[0] == size else _resize(p, size) for p in parts], axis=1))
            return np.stack(rows)
        faces = pp.to_uint8(images)
        matrix = self.family.to_output_matrix(self.portrait, faces.shape[1])
        return np.stack([paste_back(self.portrait.original, f, matrix) for f in faces])


# ---- helpers ------------------------------------------------------------------------------------------------------
def load_speech(audio, require_speech: bool = True, max_frames: int | None = None) -> Speech:
    """An audio file or a 16 kHz mono array -> `Speech`, decoded once (block by block; with `max_frames` only the
    samples those frames' mel windows read are kept, the loudness still measured over the whole file). Silent
    audio is refused when it is to drive the lips."""
    if isinstance(audio, np.ndarray):
        wav = audio.astype(np.float32).reshape(-1)
        check_finite(wav, "audio array")
        speech = Speech("audio array", wav)
    else:
        keep = None if max_frames is None else (int(max_frames) + 8) * 640 / 16000  # + the windows' reach
        wav, ms, n = decode_speech(audio, max_seconds=keep)
        speech = Speech(str(audio), wav, Path(audio), ms, n)
    wav, name = speech.wav16k, speech.name
    if wav.size == 0:
        raise InputError(f"{name}: the audio has no samples")
    # is_silent measures around the mean: a constant DC offset is not speech (issue 22)
    silent = is_silent(wav) or (speech.mean_square is not None
                                and (speech.mean_square <= 0 or 10 * np.log10(speech.mean_square) < -60.0))
    if require_speech and silent:
        raise InputError(f"{name}: the audio is silent (below -60 dBFS): lips would not move; "
                         "use --lips still or off with --duration for a silent clip")
    if speech.num_frames == 0:
        raise InputError(f"{name}: the audio is too short ({wav.size / 16000:.2f} s); at least 0.2 s is needed")
    return speech


def speech_windows_of(speech: Speech) -> np.ndarray:
    """The official mel windows (T,1,80,20) of the speech, one per output frame."""
    return speech_windows(speech.wav16k)


def load_audio_windows(audio, require_speech: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Audio file (any format/rate/channels) or 16 kHz mono array -> (mel windows (T,1,80,20), 16 kHz samples)."""
    speech = load_speech(audio, require_speech)
    return speech_windows_of(speech), speech.wav16k


def _lips_need_speech(opt: AnimateOptions) -> bool:
    return opt.lips == "audio"


def _auto_blink(opt: AnimateOptions) -> AnimateOptions:
    """--blink auto: blinks at the natural rate fitted on the corpus's speakers, with jitter (a `BlinkControl`, the
    one home of blink schedules), seeded by --motion-seed; an explicit blink control the user gave wins."""
    if opt.blink != AUTO:
        return opt
    if opt.blink_control is not None:
        return dataclasses.replace(opt, blink="still")
    from .families.meshwarp.motion import auto_blink_control
    return dataclasses.replace(opt, blink="still", blink_control=auto_blink_control(opt.motion_seed))


def _or(value, default):
    return default if value is None else value


def warn_untrained(model) -> None:
    bar = "!" * 78
    msg = (f"\n{bar}\n  pdfgc: running on SEEDED RANDOM WEIGHTS ({model.config.name}), not a trained model.\n"
           "  The video will show noise-like faces. This checks the whole pipeline end to end; for real results\n"
           "  load trained weights (--weights FILE.safetensors, or --official-checkpoints DIR).\n"
           f"{bar}\n")
    print(msg, file=sys.stderr)
    log.warning("untrained weights: %s", model.config.name)


def _with(options: AnimateOptions | None, overrides: dict) -> AnimateOptions:
    """The job's options: `options` itself when nothing is overridden (so options already checked stay so)."""
    if options is not None and not overrides:
        return options
    return dataclasses.replace(options or AnimateOptions(), **overrides)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size))  # INTER_LINEAR, as the official code resizes


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine a after affine b (both 2x3)."""
    A = np.vstack([a, [0, 0, 1]])
    B = np.vstack([b, [0, 0, 1]])
    return (A @ B)[:2]
