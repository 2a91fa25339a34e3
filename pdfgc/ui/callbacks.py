"""The page's logic, independent of gradio (`UIBackend`): widget values in, (results, status text) out."""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..controls.forms import controls_from_form
from ..controls.specs import KNOWN_EMOTIONS, describe_controls
from ..errors import InputError, PDFGCError
from ..media.audio_io import decode_audio, is_silent, to_mono_16k
from ..media.images import load_image_rgb
from ..option_fields import web_fields, web_initial, web_value
from ..options import AnimateOptions, check_options
from ..pipeline import FrameComposer
from ..vocabulary import FPS
from .sandbox import Sandbox, media_seconds, user_message
from .settings import BASE_INPUTS, CONTROL_INPUTS, UISettings

log = logging.getLogger("pdfgc")


class UIBackend:
    """The page's logic, independent of gradio: widget values in, (results, status text) out."""

    def __init__(self, pipe, settings: UISettings, sandbox: Sandbox):
        self.pipe, self.settings, self.sandbox = pipe, settings, sandbox
        # each option field's initial value on the page (the multipliers: the family's defaults, PD-FGC the
        # official 1.5 / 1.2, mesh warp 1)
        self.defaults = {name: web_initial(d, default, pipe.family) for name, d, default in web_fields(AnimateOptions)}
        self._lock = threading.Lock()  # one job on the model at a time (the queue already serialises renders)

    def _message(self, err: BaseException, paths: list[Path | None]) -> str:
        return user_message(err, paths, (self.sandbox.upload_root, self.sandbox.output_root))

    # inputs checked as soon as they are uploaded
    def check_portrait(self, value) -> tuple[np.ndarray | None, str]:
        path = None
        try:
            path = self.sandbox.input(value, "portrait")
            if path is None:
                return None, ""
            with self._lock:
                portrait = self.pipe.load_portrait(path)
            how = "aligned" if portrait.aligned_by_us else "used as an aligned 224x224 crop"
            extra = f" ({portrait.num_faces} faces: the largest is used)" if portrait.num_faces > 1 else ""
            return portrait.net_input, f"Portrait {path.name}: face {how}{extra}."
        except PDFGCError as e:
            return None, error_text(self._message(e, [path]))

    def check_audio(self, value) -> str:
        path = None
        try:
            path = self.sandbox.input(value, "audio")
            if path is None:
                return ""
            seconds = self._check_audio(path, lips_follow=True)  # the default: lips from the audio
            return f"Audio {path.name}: {seconds:.1f} s, about {int(seconds * FPS)} frames."
        except PDFGCError as e:
            return error_text(self._message(e, [path]))

    def _check_audio(self, path: Path, lips_follow: bool) -> float:
        """Seconds of the uploaded audio; InputError in this page's words (not the CLI's flags) when it is too
        long, unreadable, NaN/Inf, or silent while the lips are to follow it."""
        seconds = media_seconds(path, "audio")
        if seconds > self.settings.max_seconds:
            raise InputError(f"audio {path.name}: {seconds:.1f} s is longer than the {self.settings.max_seconds:g} s "
                             "limit of this page")
        # unreadable or NaN/Inf audio is reported now, on upload, not after planning
        samples, rate = decode_audio(path, "audio")
        if lips_follow and is_silent(to_mono_16k(samples, rate)):
            raise InputError(f"audio {path.name} is silent (below -60 dBFS): lips that follow it would not move. "
                             "Upload speech, or set Lips to 'still' or 'off' to use it as a silent sound track")
        return seconds

    # widget values -> pipeline arguments
    def values(self, *args) -> dict:
        return dict(zip(self.input_names(), args))

    def input_names(self) -> tuple[str, ...]:
        return BASE_INPUTS + CONTROL_INPUTS

    def mapping_status(self) -> tuple[list[str], str]:
        """(emotion labels to offer, a line on what the explicit controls can use) for this model."""
        direct = self.pipe.family.control_summary()
        if direct is not None:
            return direct
        try:
            m = self.pipe.control_mapping(self.settings.control_mapping)
        except PDFGCError as e:
            return list(KNOWN_EMOTIONS), f"The control mapping cannot be used: {e}"
        if m is None:
            return list(KNOWN_EMOTIONS), (
                "No fitted control mapping for this model: head pose (unless the model's pose code is in degrees), "
                "blink, gaze and emotion-label controls will say so when used; the lip controls and the emotion of "
                "a reference clip work without one. `pdfgc fit-controls` fits one.")
        parts = [k for k in ("pose", "blink", "gaze") if getattr(m, k) is not None]
        labels = m.emotion_labels or list(KNOWN_EMOTIONS)
        return labels, (f"Control mapping for {m.model_name or 'this model'}: {', '.join(parts) or 'no pose/eye'} "
                        f"maps; emotion labels {', '.join(m.emotion_labels) or 'none'}.")

    def control_options(self, v: dict, paths: list) -> dict:
        """AnimateOptions fields for the explicit controls chosen on the page (the controls' web adapter:
        pdfgc/controls/forms.py); raises InputError."""
        def upload(key: str, role: str) -> Path | None:
            p = self.sandbox.input(v.get(key), role)
            if p is not None:
                paths.append(p)
            return p

        out = controls_from_form(v, upload)
        if out and self.settings.control_mapping:
            out["control_mapping"] = self.settings.control_mapping
        return out

    def build_job(self, v: dict) -> tuple[Path, Path | None, Any, list[Path | None]]:
        """(portrait, audio, AnimateOptions, every input path) from the widget values; raises InputError."""
        sb = self.sandbox
        portrait = sb.input(v.get("portrait"), "portrait")
        if portrait is None:
            raise InputError("no portrait: upload a photo (or pick an example)")
        load_image_rgb(portrait)  # a bad photo is the first thing to report (the face is found later)
        audio = sb.input(v.get("audio"), "audio")
        paths = [portrait, audio]

        def source(mode_key: str, video_key: str, role: str) -> str:
            mode = v.get(mode_key) or "still"
            if mode == "video":
                p = sb.input(v.get(video_key), f"{role} video")
                if p is None:
                    raise InputError(f"{role}: 'from a video' is chosen but no video is uploaded")
                paths.append(p)
                return str(p)
            if mode in ("still", "off", "audio", "auto"):   # auto: pose and blinks only (check_options)
                return mode
            if mode in ("controls", "reference"):
                return "still"  # the control replaces (or, relative pose, adds to) the portrait's own code
            raise InputError(f"{role}: unknown source '{mode}'")

        lips = source("lips_mode", "lips_video", "lips")
        if lips == "audio" and audio is None:
            raise InputError("lips follow the audio, but no audio is uploaded (upload speech, or take the lips "
                             "from a video)")
        if audio is not None:
            self._check_audio(audio, lips_follow=lips == "audio")
        elif lips not in ("still", "off"):
            seconds = media_seconds(Path(lips), "lips video")
            if seconds > self.settings.max_seconds:
                raise InputError(f"lips video {Path(lips).name}: {seconds:.1f} s is longer than the "
                                 f"{self.settings.max_seconds:g} s limit of this page")
        else:
            raise InputError("no audio: upload speech, or take the lips from a video")
        blink = source("blink_mode", "eyes_video", "blink")
        gaze = source("gaze_mode", "eyes_video", "gaze")
        pose = source("pose_mode", "pose_video", "head pose")
        emotion = source("emotion_mode", "emotion_video", "emotion")
        # the options' own fields (intensities, layout, precision, ...), read as their declarations say
        fields = {name: web_value(name, d, default, v.get(name), self.pipe.family)
                  for name, d, default in web_fields(AnimateOptions)}
        opt = AnimateOptions(
            lips=lips, pose=pose, eyes="still", blink=blink, gaze=gaze, emotion=emotion, **fields,
            max_frames=int(math.ceil(self.settings.max_seconds * FPS)), progress=False,
            **self.control_options(v, paths))
        check_options(opt, audio=audio)  # the one validation of option values (as the CLI and the API)
        return portrait, audio, opt, paths

    # preview: a few frames from the first seconds, no video written
    def preview(self, *args) -> tuple[list[tuple[np.ndarray, str]], str]:
        paths: list[Path | None] = []
        try:
            portrait, audio, opt, paths = self.build_job(self.values(*args))
            opt = dataclasses.replace(opt, max_frames=max(1, int(self.settings.preview_seconds * FPS)))
            t0 = time.perf_counter()
            with self._lock:
                p = self.pipe.load_portrait(portrait, opt.align)
                plan = self.pipe.plan(p, audio, opt)
                composer = FrameComposer(self.pipe.family, p, plan, opt.layout)
                picks = sorted({int(round(x)) for x in
                                np.linspace(0, plan.num_frames - 1, max(1, self.settings.preview_frames))})
                frames = []
                for t in picks:
                    for sl, images in self.pipe.render(plan, opt, start=t, stop=t + 1):
                        frames.append((composer(sl, images)[0], f"frame {t} ({t / FPS:.2f} s)"))
            return frames, (f"Preview: {len(frames)} frames in {time.perf_counter() - t0:.1f} s."
                            + describe_controls(opt))
        except PDFGCError as e:
            return [], error_text(self._message(e, paths))
        except Exception as e:  # a bug, not the user's input: say so and keep the page alive
            log.error("preview failed:\n%s", traceback.format_exc())
            return [], error_text(f"internal error ({type(e).__name__}: {self._message(e, paths)})")

    def render(self, *args, session: str | None = None,
               progress: Callable[[float, str], None] | None = None) -> tuple[str | None, str]:
        """-> (mp4 path inside the session's output folder or None, status text)."""
        paths: list[Path | None] = []
        try:
            portrait, audio, opt, paths = self.build_job(self.values(*args))
            self.sandbox.prune(self.settings.output_max_age_s)
            out = self.sandbox.output_path(session)
            if progress:
                progress(0.0, "reading inputs and planning the codes")

            def on_progress(done: int, total: int) -> None:
                if progress:
                    progress(done / max(total, 1), f"rendering frame {done}/{total}")

            t0 = time.perf_counter()
            with self._lock:
                res = self.pipe(portrait, audio=audio, output=out, options=opt, on_progress=on_progress)
            dt = time.perf_counter() - t0
            return str(res.output), (f"Done: {res.num_frames} frames, {res.seconds:.2f} s of video in {dt:.1f} s "
                                     f"({res.num_frames / max(dt, 1e-9):.1f} frames/s)." + describe_controls(opt))
        except PDFGCError as e:
            return None, error_text(self._message(e, paths))
        except Exception as e:
            log.error("render failed:\n%s", traceback.format_exc())
            return None, error_text(f"internal error ({type(e).__name__}: {self._message(e, paths)})")


def error_text(message: str) -> str:
    return f"**Error:** {message}"
