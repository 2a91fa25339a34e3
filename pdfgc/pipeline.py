"""One portrait plus per-factor sources -> a talking-head mp4. The single entry point:

    from pdfgc import TalkingHeadPipeline
    pipe = TalkingHeadPipeline.from_default()           # or .from_pretrained(path) / .from_official(folder)
    pipe("portrait.jpg", audio="speech.mp3", pose="head.mp4", eyes="eyes/", emotion="smile.mp4", output="out.mp4")

The pipeline owns I/O, cropping, the frame loop and muxing; the tensor-level steps are the model's encoders and
generator. It works in two phases so memory stays flat: (1) every factor's per-frame code is computed (codes are a
few kB per frame), (2) frames are rendered in small batches and streamed to the encoder.

Factor sources (each factor is independent):
  lips:     "audio" (default) | "still" (the portrait's mouth) | "off" (zero code) | a video/folder of a speaking mouth
  pose, eyes, blink, gaze, emotion: a video file | a folder of frames | an image | "still" | "off"
  `eyes` sets both blink and gaze; `blink`/`gaze` override it per part of the eye code.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .controls.schedule import frame_indices
from .controls.smoothing import smooth_box3, smooth_mouth
from .errors import InputError
from .media import preprocess as pp
from .media.video import read_image_rgb
from .model import BLINK_DIMS, PDFGC
from .options import FPS, LAYOUTS, SPECIAL_SOURCES, AnimateOptions, check_options as _check_options  # noqa: F401 (re-exported)
from .runtime import Precision, resolve_device, set_threads, tune_malloc

log = logging.getLogger("pdfgc")



@dataclass
class Portrait:
    original: np.ndarray          # the photo as read (RGB uint8)
    crop: np.ndarray              # the aligned 224 crop (before the official crop-zoom)
    net_input: np.ndarray         # what the encoders see (after crop-zoom), uint8
    to_net: np.ndarray            # (2,3) affine: original pixels -> network-input pixels
    aligned_by_us: bool
    num_faces: int = 1


@dataclass
class CodePlan:
    """Every per-frame code of one animation, before rendering (what `pdfgc verify-official` checks)."""

    num_frames: int
    appearance: torch.Tensor      # (1, 2048)
    identity: torch.Tensor        # (1, 512, 7, 7)
    mouth: torch.Tensor           # (T, 500) final (scaled, smoothed, masked)
    emotion: torch.Tensor         # (T, 30)
    eye: torch.Tensor             # (T, 6)
    pose: torch.Tensor            # (T, 6)
    mel_windows: np.ndarray | None = None      # (T,1,80,20)
    audio_mouth_raw: torch.Tensor | None = None
    motion_raw: dict = field(default_factory=dict)   # source key -> MotionCodes over the clip's frames
    factor_index: dict = field(default_factory=dict)  # factor -> (source key, per-output-frame clip indices)
    panels: dict = field(default_factory=dict)        # factor -> (clip crops, indices) for the panel layout

    def styles(self, model: PDFGC, sl: slice) -> torch.Tensor:
        return model.assemble_style(self.appearance, self.mouth[sl], self.emotion[sl], self.eye[sl], self.pose[sl])


@dataclass
class AnimationResult:
    output: Path | None
    num_frames: int
    fps: int
    seconds: float
    plan: CodePlan


def _is_special(src: str | None) -> bool:
    return src is None or (isinstance(src, str) and src in SPECIAL_SOURCES)


class TalkingHeadPipeline:
    def __init__(self, model: PDFGC, device: str | None = "auto", threads: int | None = None):
        tune_malloc()
        self.threads = set_threads(threads)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if not model.config.trained:
            warn_untrained(model)

    # ---- construction ---------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, **kw) -> "TalkingHeadPipeline":
        return cls(PDFGC.from_pretrained(path), **kw)

    @classmethod
    def from_official(cls, folder, **kw) -> "TalkingHeadPipeline":
        from .official.checkpoints import load_official
        return cls(load_official(folder), **kw)

    @classmethod
    def from_default(cls, **kw) -> "TalkingHeadPipeline":
        from .weights import default_model
        return cls(default_model(), **kw)

    # ---- inputs --------------------------------------------------------------------------------------------
    def load_portrait(self, source, align: str = "auto") -> Portrait:
        """A photo (any size; EXIF rotation applied) or an aligned 224 crop -> the appearance input."""
        from .media.face import align_portrait, load_image_rgb, looks_like_aligned_crop, warp_to_crop

        if isinstance(source, np.ndarray):
            image, name = np.ascontiguousarray(source[..., :3]).astype(np.uint8), "portrait array"
        else:
            name = str(source)
            image = load_image_rgb(source)
            if image.shape[:2] == (pp.SIZE, pp.SIZE) or align == "never":
                image = read_image_rgb(source, "portrait")  # the official reader (cv2): aligned crops match it
        if align not in ("auto", "always", "never"):
            raise InputError(f"unknown align mode '{align}' (auto, always, never)")
        use_as_crop = align == "never" or (align == "auto" and looks_like_aligned_crop(image))
        num_faces = 1
        if use_as_crop:
            crop = image if image.shape[:2] == (pp.SIZE, pp.SIZE) else _resize(image, pp.SIZE)
            sy, sx = pp.SIZE / image.shape[0], pp.SIZE / image.shape[1]
            to_crop = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
        else:
            fa = align_portrait(image, source=name)
            crop, to_crop, num_faces = warp_to_crop(image, fa), fa.matrix, fa.num_faces
        net = pp.official_crop_zoom(crop) if self.model.config.official_crop else crop
        to_net = _compose(_crop_zoom_matrix() if self.model.config.official_crop else np.eye(3)[:2], to_crop)
        return Portrait(image, crop, net, to_net, not use_as_crop, num_faces)

    # ---- phase 1: codes --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def plan(self, portrait, audio=None, options: AnimateOptions | None = None, **overrides) -> CodePlan:
        """Compute every per-frame code (no rendering)."""
        opt = dataclasses.replace(options or AnimateOptions(), **overrides)
        _check_options(opt)
        from .controls.apply import preflight_controls
        preflight_controls(self, opt)  # malformed controls or a missing mapping fail before any encoding
        cfg = self.model.config
        lay = self.model.layout
        prec = Precision(opt.precision, self.device)
        portrait = portrait if isinstance(portrait, Portrait) else self.load_portrait(portrait, opt.align)
        factors = {"lips": opt.lips, "pose": opt.pose, "blink": opt.blink or opt.eyes, "gaze": opt.gaze or opt.eyes,
                   "emotion": opt.emotion}

        # length: audio, else the lips video, else --duration
        windows = None
        if audio is not None:
            windows, _ = load_audio_windows(audio, require_speech=factors["lips"] == "audio")
            num_frames = windows.shape[0]
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

        # appearance, once per video
        with prec.autocast():
            app_vec, identity = self.model.appearance(self._tensor(portrait.net_input))
        app_vec, identity = app_vec.float(), identity.float()

        # driving sources: each distinct path opened and encoded once, whatever factors share it
        clips, motion_raw, factor_index, panels = {}, {}, {}, {}
        if num_frames is None:  # length follows the lips video
            from .media.driving import open_driving
            key = str(factors["lips"])
            clips[key] = open_driving(key, None, opt.align, cfg.official_crop, role="lips video",
                                      progress=opt.progress)
            num_frames = clips[key].num_frames - opt.driving_skip
            if opt.max_frames is not None:
                num_frames = min(num_frames, opt.max_frames)
            if num_frames < 1:
                raise InputError(f"lips video {key}: too short ({clips[key].num_frames} frames)")
        need = num_frames + opt.driving_skip
        for factor, src in factors.items():
            if _is_special(src):
                continue
            key = str(src)
            if key not in clips:
                from .media.driving import open_driving
                clip_need = need if opt.driving_mode != "strict" else None
                clips[key] = open_driving(key, clip_need, opt.align, cfg.official_crop, role=f"{factor} source",
                                          progress=opt.progress)
            clip = clips[key]
            skip = 0 if clip.kind == "image" else opt.driving_skip
            idx = frame_indices(clip.num_frames, num_frames, opt.driving_mode, skip, source=f"{factor} source {key}")
            factor_index[factor] = (key, idx)
            panels[factor] = (clip.crops, idx)
        for key, clip in clips.items():
            used = sorted({int(i) for f, (k, idx) in factor_index.items() if k == key for i in idx})
            want_mouth = any(k == key and f == "lips" for f, (k, _) in factor_index.items())
            motion_raw[key] = self._encode_clip(clip, used, want_mouth, prec, opt.batch_size,
                                                progress=opt.progress)
        still = None
        if any(src == "still" for src in factors.values()):
            with prec.autocast():
                still = self.model.motion(self._tensor(portrait.net_input), mouth=True)

        def per_frame(factor: str, attr: str, dim: int) -> torch.Tensor:
            src = factors[factor]
            if src == "off" or src is None:
                return torch.zeros(num_frames, dim)
            if src == "still":
                return getattr(still, attr).float().cpu().expand(num_frames, dim).clone()
            key, idx = factor_index[factor]
            return getattr(motion_raw[key], attr)[torch.from_numpy(idx)]

        # lips
        audio_mouth_raw = None
        if factors["lips"] == "audio":
            audio_mouth_raw = self._encode_audio(windows[:num_frames], prec, opt.batch_size)
            mouth = audio_mouth_raw
        else:
            mouth = per_frame("lips", "mouth", lay.mouth)
        mouth = mouth * (cfg.mouth_scale if opt.mouth_intensity is None else opt.mouth_intensity)
        if opt.mouth_smoothing and factors["lips"] not in ("off", "still"):
            mouth = smooth_mouth(mouth)
        # eyes: blink dims and gaze dims may come from different sources
        blink_mask = torch.zeros(lay.eye)
        blink_mask[list(BLINK_DIMS)] = 1
        gaze_mask = 1 - blink_mask
        eye_b = per_frame("blink", "eye", lay.eye) * (cfg.eye_scale if opt.blink_intensity is None else opt.blink_intensity)
        eye_g = per_frame("gaze", "eye", lay.eye) * (cfg.eye_scale if opt.gaze_intensity is None else opt.gaze_intensity)
        eye = eye_b * blink_mask + eye_g * gaze_mask
        emotion = per_frame("emotion", "emotion", lay.emotion) * (
            cfg.emotion_scale if opt.emotion_intensity is None else opt.emotion_intensity)
        pose = per_frame("pose", "pose", lay.pose)
        if opt.pose_smoothing and factors["pose"] not in ("off", "still"):
            pose = smooth_box3(pose)
        pose = pose * opt.pose_intensity
        # explicit controls override their own part of the codes (pdfgc/controls/apply.py: precedence)
        from .controls.apply import apply_controls
        mouth, eye, emotion, pose = apply_controls(self, opt, num_frames, mouth, eye, emotion, pose,
                                                   portrait=portrait, still=still, prec=prec)
        return CodePlan(num_frames, app_vec.cpu(), identity.cpu(), mouth.contiguous(), emotion.contiguous(),
                        eye.contiguous(), pose.contiguous(), windows, audio_mouth_raw, motion_raw, factor_index,
                        panels)

    def control_mapping(self, path=None):
        """The fitted control mapping of this model (`path`, else `<weights stem>.controls.json` beside the weights),
        None when there is none; refused if fitted for other weights (pdfgc.controls.mapping)."""
        from .controls.mapping import find_mapping
        return find_mapping(self.model, path)

    def _tensor(self, images_uint8: np.ndarray) -> torch.Tensor:
        # channels-last: oneDNN's fastest layout for the encoders' convolutions (same values); a lite model's
        # encoders take the 224 crop at their own resolution
        x = self.model.network_input(pp.to_tensor(images_uint8).to(self.device))
        return x.contiguous(memory_format=torch.channels_last)

    def _batch(self, opt_batch: int | None, kind: str, precision: str = "exact") -> int:
        if opt_batch:
            return int(opt_batch)
        if self.device.type == "cuda":
            return 16
        if kind == "generator":
            # CPU: batch 1 is cheapest in fp32; in bf16 a batch of 8 shares the small layers (Generator.render
            # runs the 56 px and larger layers per frame either way), ~3 % faster
            return 8 if precision == "fast" else 1
        return {"motion": 8, "audio": 32}[kind]

    def _encode_clip(self, clip, used: list[int], want_mouth: bool, prec: Precision, batch: int | None,
                     progress: bool = False):
        """Motion codes for the frames of a clip that are used; byte-identical frames are encoded once."""
        from .networks.motion import MotionCodes

        uniq = clip.unique_index()
        todo = sorted({int(uniq[i]) for i in used})
        lay = self.model.layout
        out = {a: torch.zeros(clip.num_frames, d) for a, d in
               (("pose", lay.pose), ("eye", lay.eye), ("emotion", lay.emotion), ("mouth", lay.mouth))}
        bs = self._batch(batch, "motion")
        bar = _progress_bar(len(todo), progress and len(todo) > 4 * bs, f"encoding {clip.path.name}")
        for s in range(0, len(todo), bs):
            if bar:
                bar.update(min(bs, len(todo) - s))
            rows = todo[s:s + bs]
            with prec.autocast():
                codes = self.model.motion(self._tensor(np.asarray(clip.crops[rows])), mouth=want_mouth)
            for a in out:
                v = getattr(codes, a)
                if v is not None:
                    out[a][rows] = v.float().cpu()
        if bar:
            bar.close()
        src = torch.from_numpy(uniq)
        return MotionCodes(**{a: v[src] for a, v in out.items()}) if len(uniq) else MotionCodes(**out)

    def _encode_audio(self, windows: np.ndarray, prec: Precision, batch: int | None) -> torch.Tensor:
        bs = self._batch(batch, "audio")
        outs = []
        for s in range(0, windows.shape[0], bs):
            with prec.autocast():
                _, mouth = self.model.audio(torch.from_numpy(windows[s:s + bs]).to(self.device))
            outs.append(mouth.float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0, self.model.layout.mouth)

    # ---- phase 2: frames ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def render(self, plan: CodePlan, options: AnimateOptions | None = None, start: int = 0, stop: int | None = None,
               progress: Callable[[int], None] | None = None):
        """Yield generated frames as float tensors (B,3,224,224) in [-1,1], batch by batch."""
        opt = options or AnimateOptions()
        prec = Precision(opt.precision, self.device)
        g = self.model.generator
        stop = plan.num_frames if stop is None else stop
        bs = self._batch(opt.batch_size, "generator", opt.precision)
        identity = plan.identity.to(self.device)
        for s in range(start, stop, bs):
            sl = slice(s, min(s + bs, stop))
            style = plan.styles(self.model, sl).to(self.device)
            with prec.autocast():
                img = g.render(style, identity.expand(style.shape[0], -1, -1, -1), static=self.model.layout.appearance)
            yield sl, self.model.to_crop_resolution(img.float())
            if progress:
                progress(sl.stop - sl.start)

    def __call__(self, portrait, audio=None, output: str | os.PathLike | None = None,
                 options: AnimateOptions | None = None, on_progress: Callable[[int, int], None] | None = None,
                 **overrides) -> AnimationResult:
        """Animate `portrait` and write `output` (mp4, H.264 + AAC, 25 fps); see the module doc for sources.
        `on_progress(frames_written, total)` is called after each written batch (the web UI's progress bar)."""
        from .media.audio_io import decode_audio
        from .media.video import VideoWriter

        opt = dataclasses.replace(options or AnimateOptions(), **overrides)
        _check_options(opt)
        out_path = Path(output) if output is not None else None
        if out_path is not None:
            _check_output(out_path)
        portrait_obj = self.load_portrait(portrait, opt.align) if not isinstance(portrait, Portrait) else portrait
        if opt.layout == "pasteback" and portrait_obj.original.shape[0] * portrait_obj.original.shape[1] > 16e6:
            log.warning("pasting back into a %dx%d photo: large frames encode slowly",
                        portrait_obj.original.shape[1], portrait_obj.original.shape[0])
        plan = self.plan(portrait_obj, audio, opt)
        if out_path is None:
            return AnimationResult(None, plan.num_frames, FPS, plan.num_frames / FPS, plan)
        audio_samples, audio_rate = (None, None)
        if audio is not None:
            audio_samples, audio_rate = decode_audio(audio)
        elif not _is_special(opt.lips):
            try:
                audio_samples, audio_rate = decode_audio(opt.lips, source="lips video")
            except InputError:
                audio_samples = None  # a silent lips video gives a silent result
        composer = FrameComposer(self.model, portrait_obj, plan, opt.layout)
        bar = _progress_bar(plan.num_frames, opt.progress)
        written = 0

        def advance(n: int) -> None:
            nonlocal written
            written += n
            if bar:
                bar.update(n)
            if on_progress:
                on_progress(written, plan.num_frames)
        try:
            preset = opt.preset or ("veryfast" if opt.precision == "fast" else "medium")
            with VideoWriter(out_path, fps=FPS, audio=audio_samples, audio_rate=audio_rate, crf=opt.crf,
                             preset=preset) as writer:
                for sl, images in self.render(plan, opt, progress=advance):
                    writer.write_batch(composer(sl, images))
        finally:
            if bar:
                bar.close()
        return AnimationResult(out_path, plan.num_frames, FPS, plan.num_frames / FPS, plan)


class FrameComposer:
    """Generated faces -> output frames in the chosen layout."""

    def __init__(self, model: PDFGC, portrait: Portrait, plan: CodePlan, layout: str):
        self.portrait, self.plan, self.layout = portrait, plan, layout
        if layout == "pasteback":
            from .media.face import paste_back  # noqa: F401 - fail early if unavailable

    def __call__(self, sl: slice, images: torch.Tensor) -> np.ndarray:
        if self.layout == "result":
            return pp.to_uint8(images)
        if self.layout == "panels":
            # official strip: appearance | generated | pose | expression | eye, each as the official uint8 cast
            faces = pp.to_uint8_truncated(images)
            rows = []
            for j, t in enumerate(range(sl.start, sl.stop)):
                parts = [self.portrait.net_input, faces[j]]
                for factor in ("pose", "emotion", "gaze"):
                    crops, idx = self.plan.panels.get(factor, (None, None))
                    if factor == "gaze" and crops is None:
                        crops, idx = self.plan.panels.get("blink", (None, None))
                    parts.append(np.asarray(crops[idx[t]]) if crops is not None else np.zeros_like(faces[j]))
                rows.append(np.concatenate(parts, axis=1))
            return np.stack(rows)
        from .media.face import paste_back
        faces = pp.to_uint8(images)
        return np.stack([paste_back(self.portrait.original, f, self.portrait.to_net) for f in faces])


# ---- helpers ------------------------------------------------------------------------------------------------------
def load_audio_windows(audio, require_speech: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Audio file (any format/rate/channels) or 16 kHz mono array -> (mel windows (T,1,80,20), 16 kHz samples).
    Silent audio is refused when it is to drive the lips."""
    from .media.audio_io import is_silent, load_speech
    from .media.spectrogram import speech_windows

    if isinstance(audio, np.ndarray):
        wav, name = audio.astype(np.float32).reshape(-1), "audio array"
    else:
        wav, name = load_speech(audio), str(audio)
    if wav.size == 0:
        raise InputError(f"{name}: the audio has no samples")
    if require_speech and is_silent(wav):
        raise InputError(f"{name}: the audio is silent (below -60 dBFS): lips would not move; "
                         "use --lips still or off with --duration for a silent clip")
    windows = speech_windows(wav)
    if windows.shape[0] == 0:
        raise InputError(f"{name}: the audio is too short ({wav.size / 16000:.2f} s); at least 0.2 s is needed")
    return windows, wav


def warn_untrained(model: PDFGC) -> None:
    bar = "!" * 78
    msg = (f"\n{bar}\n  pdfgc: running on SEEDED RANDOM WEIGHTS ({model.config.name}), not a trained model.\n"
           "  The video will show noise-like faces. This checks the whole pipeline end to end; for real results\n"
           "  load trained weights (--weights FILE.safetensors, or --official-checkpoints DIR).\n"
           f"{bar}\n")
    print(msg, file=sys.stderr)
    log.warning("untrained weights: %s", model.config.name)


def _check_output(path: Path) -> None:
    if path.suffix.lower() != ".mp4":
        raise InputError(f"output {path}: only .mp4 output is supported")
    if not path.parent.is_dir():
        raise InputError(f"output {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"output {path}: is a folder")


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2
    return cv2.resize(image, (size, size))  # INTER_LINEAR, as the official code resizes


def _crop_zoom_matrix() -> np.ndarray:
    """224-crop pixels -> network-input pixels for the official crop [0:192, 16:208] + resize (cv2 pixel centres)."""
    s = pp.SIZE / (pp.CROP_ROWS[1] - pp.CROP_ROWS[0])
    return np.array([[s, 0, (0.5 - pp.CROP_COLS[0]) * s - 0.5], [0, s, (0.5 - pp.CROP_ROWS[0]) * s - 0.5]])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine a after affine b (both 2x3)."""
    A = np.vstack([a, [0, 0, 1]])
    B = np.vstack([b, [0, 0, 1]])
    return (A @ B)[:2]


def _progress_bar(total: int, enabled: bool, desc: str = "rendering"):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="frame", desc=desc, file=sys.stderr, dynamic_ncols=True)
