"""The web UI: a gradio Blocks app over TalkingHeadPipeline (`pdfgc ui`).

Everything the page can do goes through `UIBackend`, whose methods take plain widget values, so the callbacks are
testable without a browser. Safety, in one place:
  * inputs are read only from gradio's upload area (a private folder per app run) or the examples shipped in the
    package; any other path is refused before it is opened (`Sandbox.input`);
  * outputs are written only under a per-session folder of the app's own output area;
  * uploads are capped in size (gradio's own `max_file_size` plus our check) and audio/video in duration;
  * nothing is fetched from the internet: analytics and hub telemetry are off, the theme uses system fonts.
"""
import dataclasses
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError, PDFGCError

log = logging.getLogger("pdfgc")

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
FPS = 25

# factor -> the sources the page offers, as (label, value); "video" means the factor's uploaded clip
LIPS_MODES = [("from the audio", "audio"), ("from a video", "video"), ("still (the portrait's mouth)", "still"),
              ("off", "off")]
FACTOR_MODES = [("still (the portrait's own)", "still"), ("from a video", "video"), ("off", "off")]
CONTROLS_MODE = ("explicit controls", "controls")
EMOTION_REFERENCE_MODE = ("mean expression of a clip", "reference")
# head-pose presets as keyframes (yaw > 0 turns the face toward the image's right; pitch > 0 chin up; roll > 0
# clockwise), written into the keyframes box where they can be edited
POSE_PRESETS = {
    "turn toward the image's right, 20 deg over 2 s": "0:yaw=0; 2:yaw=20",
    "turn toward the image's left, 20 deg over 2 s": "0:yaw=0; 2:yaw=-20",
    "nod": "0:pitch=0; 0.4:pitch=-8; 0.8:pitch=4; 1.2:pitch=0",
    "shake (no)": "0:yaw=0; 0.4:yaw=-15; 0.8:yaw=15; 1.2:yaw=0",
    "tilt 10 deg and back": "0:roll=0; 1:roll=10; 2:roll=0",
    "look around": "0:yaw=0,pitch=0; 1.5:yaw=-20,pitch=5; 3:yaw=20,pitch=-5; 4.5:yaw=0,pitch=0",
}
# blink presets: (times, rate per minute, duration s, openness)
BLINK_PRESETS = {
    "natural (15 per minute)": ("", 15.0, 0.2, 1.0),
    "every 4 seconds": ("every4", 0.0, 0.2, 1.0),
    "no blinks": ("", 0.0, 0.2, 1.0),
    "sleepy (slow, half-open)": ("", 8.0, 0.45, 0.6),
}
# gaze presets: (at the camera, horizontal, vertical, keyframes); horizontal > 0 toward the image's right, up > 0
GAZE_PRESETS = {
    "at the camera": (True, 0.0, 0.0, ""),
    "to the image's left": (False, -0.6, 0.0, ""),
    "to the image's right": (False, 0.6, 0.0, ""),
    "up": (False, 0.0, 0.5, ""),
    "down": (False, 0.0, -0.5, ""),
    "glance left and right": (False, 0.0, 0.0, "0:camera; 1:h=-0.6; 2:h=0.6; 3:camera"),
}

# the widget values a render takes, in the order the page passes them (see UIBackend.values)
BASE_INPUTS = (
    "portrait", "audio",
    "lips_mode", "lips_video", "mouth_intensity",
    "pose_mode", "pose_video", "pose_intensity",
    "blink_mode", "gaze_mode", "eyes_video", "blink_intensity", "gaze_intensity",
    "emotion_mode", "emotion_video", "emotion_intensity",
    "layout", "precision", "driving_mode",
)
# the explicit controls' widgets (pdfgc.controls.explicit)
CONTROL_INPUTS = (
    "pose_yaw", "pose_pitch", "pose_roll", "pose_keyframes", "pose_interp", "pose_absolute",
    "blink_times", "blink_rate", "blink_duration", "eye_openness",
    "gaze_camera", "gaze_h", "gaze_v", "gaze_keyframes",
    "emotion_label", "emotion_level", "emotion_label2", "emotion_mix",
    "lip_level", "mute_spans",
)


@dataclass
class UISettings:
    host: str = "127.0.0.1"
    port: int | None = 7860
    max_upload_mb: float = 50.0
    max_seconds: float = 60.0           # longest audio (or lips video) accepted for a render
    preview_frames: int = 3
    preview_seconds: float = 2.0        # the preview samples frames from the first seconds only (fast)
    work_dir: Path | None = None        # uploads/ and outputs/ live here; default: a fresh temp folder
    output_max_age_s: float = 6 * 3600  # session output folders older than this are removed
    control_mapping: str | None = None  # fitted control mapping (default: the one beside the weights)


def check_settings(settings: UISettings) -> None:
    """The page's settings: a port in 1..65535 that is free on the host, positive finite limits. InputError
    naming the flag, before the model is loaded (gradio would fail later with a traceback or a busy-port search)."""
    port = settings.port
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise InputError(f"--port {port}: a port is a number in 1..65535")
    for flag, v in (("--max-upload-mb", settings.max_upload_mb), ("--max-seconds", settings.max_seconds)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise InputError(f"{flag} {v}: must be a number above 0")
    if port is not None:
        import errno
        import socket

        try:
            infos = socket.getaddrinfo(settings.host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise InputError(f"--host {settings.host}: cannot use this address ({e})") from None
        family, kind, proto, _, addr = infos[0]
        with socket.socket(family, kind, proto) as sock:
            try:
                # as the server does: a port in TIME_WAIT is free, a listening one is not
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise InputError(f"--port {port}: already in use on {settings.host} (another server is "
                                     "running there); choose another port with --port") from None
                raise InputError(f"--host {settings.host} --port {port}: cannot listen there ({e.strerror})") from None


# ---- sandbox ------------------------------------------------------------------------------------------------------
def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


class Sandbox:
    """Where the app may read (uploads, shipped examples) and write (per-session outputs)."""

    def __init__(self, upload_root: Path, output_root: Path, max_upload_mb: float,
                 extra_inputs: tuple[Path, ...] = (EXAMPLES_DIR,)):
        self.upload_root = Path(os.path.realpath(upload_root))
        self.output_root = Path(os.path.realpath(output_root))
        self.input_roots = (self.upload_root,) + tuple(Path(os.path.realpath(p)) for p in extra_inputs)
        self.max_upload_mb = float(max_upload_mb)
        self.upload_root.mkdir(parents=True, exist_ok=True)
        self.output_root.mkdir(parents=True, exist_ok=True)

    def input(self, value: Any, role: str) -> Path | None:
        """A widget's file value -> a checked path inside the upload/examples area, or None when empty."""
        if value is None or value == "":
            return None
        raw = value if isinstance(value, (str, os.PathLike)) else (
            value.get("path") if isinstance(value, dict) else getattr(value, "path", None))
        if raw is None:
            raise InputError(f"{role}: not a file")
        real = Path(os.path.realpath(raw))  # symlinks and '..' resolved before the check
        if not any(_within(real, root) for root in self.input_roots):
            raise InputError(f"{role} {Path(raw).name}: outside the upload area; upload the file instead")
        if not real.is_file():
            raise InputError(f"{role} {real.name}: not found (upload it again)")
        size_mb = real.stat().st_size / 1e6
        if size_mb > self.max_upload_mb:
            raise InputError(f"{role} {real.name}: {size_mb:.1f} MB is over the {self.max_upload_mb:g} MB upload "
                             "limit")
        return real

    def session_dir(self, session: str | None) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_-]", "", session or "")[:64] or "local"
        d = self.output_root / safe
        d.mkdir(parents=True, exist_ok=True)
        return d

    def output_path(self, session: str | None, stem: str = "pdfgc") -> Path:
        return self.session_dir(session) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-" \
                                           f"{threading.get_ident() % 10000}.mp4"

    def prune(self, max_age_s: float) -> None:
        now = time.time()
        for d in self.output_root.iterdir():
            if d.is_dir() and now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)


def media_seconds(path: Path, role: str) -> float:
    """Duration of an audio/video file, from the container (decoding only if the container does not say)."""
    from ..media.audio_io import decode_audio, open_media

    with open_media(path, role) as c:
        if c.duration:
            return c.duration / 1e6
        for s in list(c.streams.audio) + list(c.streams.video):
            if s.duration and s.time_base:
                return float(s.duration * s.time_base)
    samples, rate = decode_audio(path, role)
    return samples.shape[-1] / rate


def user_message(err: BaseException, paths: list[Path | None], roots: tuple[Path, ...] = ()) -> str:
    """The pdfgc error text with upload-area paths shown as the bare file names the user knows."""
    msg = str(err)
    for p in sorted((p for p in paths if p is not None), key=lambda p: -len(str(p))):
        msg = msg.replace(str(p), p.name)
    for root in roots:  # any other path inside our own areas (e.g. a copy gradio made): its name only
        msg = re.sub(re.escape(str(root)) + r"/(?:[^\s/]+/)*", "", msg)
    return msg


# ---- the callbacks ------------------------------------------------------------------------------------------------
class UIBackend:
    """The page's logic, independent of gradio: widget values in, (results, status text) out."""

    def __init__(self, pipe, settings: UISettings, sandbox: Sandbox):
        self.pipe, self.settings, self.sandbox = pipe, settings, sandbox
        fam = pipe.family  # each family's default multipliers (PD-FGC: the official 1.5 / 1.2; mesh warp: 1)
        self.defaults = {"mouth_intensity": fam.intensity("mouth"), "pose_intensity": fam.intensity("pose"),
                         "blink_intensity": fam.intensity("blink"), "gaze_intensity": fam.intensity("gaze"),
                         "emotion_intensity": fam.intensity("emotion")}
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
        from ..media.audio_io import decode_audio, is_silent, to_mono_16k

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
        from ..controls.explicit import KNOWN_EMOTIONS

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
        """AnimateOptions fields for the explicit controls chosen on the page; raises InputError."""
        from ..controls.explicit import (BlinkControl, EmotionControl, GazeControl, LipControl, PoseControl,
                                         parse_spans, parse_times)

        def num(key: str, default: float) -> float:
            x = v.get(key)
            return default if x is None or x == "" else float(x)

        def text(key: str) -> str:
            return str(v.get(key) or "").strip()

        out: dict = {}
        if v.get("pose_mode") == "controls":
            angles = {ch: num(f"pose_{ch}", 0.0) for ch in ("yaw", "pitch", "roll")}
            common = dict(interpolation=v.get("pose_interp") or "smooth", relative=not v.get("pose_absolute"))
            if text("pose_keyframes"):
                keys = PoseControl.parse(text("pose_keyframes")).keyframes
                if not keys:
                    raise InputError(f"pose keyframes '{text('pose_keyframes')}': expected TIME:NAME=VALUE,... "
                                     "e.g. '0:yaw=0; 2:yaw=20'")
                keyed = {n for k in keys for n in k if n != "t"}
                # the keyframes own the channels they set; a non-zero slider still sets the others
                extra = {ch: a for ch, a in angles.items() if ch not in keyed and a != 0}
                out["pose_control"] = PoseControl(keyframes=keys, **extra, **common).validate()
            else:
                out["pose_control"] = PoseControl(**angles, **common).validate()
        if v.get("blink_mode") == "controls":
            times = text("blink_times")
            out["blink_control"] = BlinkControl(
                times=parse_times(times, "blink times") if times else None, rate=num("blink_rate", 0.0),
                duration=num("blink_duration", 0.2), openness=num("eye_openness", 1.0)).validate()
        if v.get("gaze_mode") == "controls":
            if v.get("gaze_camera"):
                out["gaze_control"] = GazeControl(camera=True).validate()
            elif text("gaze_keyframes"):
                g = GazeControl.parse(text("gaze_keyframes"))
                if not g.keyframes:
                    raise InputError(f"gaze keyframes '{text('gaze_keyframes')}': expected e.g. "
                                     "'0:camera; 1.5:h=0.5; 3:h=-0.5,v=0.2'")
                out["gaze_control"] = g
            else:
                out["gaze_control"] = GazeControl(horizontal=num("gaze_h", 0.0), vertical=num("gaze_v", 0.0)
                                                  ).validate()
        level = num("emotion_level", 1.0)
        if v.get("emotion_mode") == "controls":
            first, second, mix = v.get("emotion_label") or "neutral", v.get("emotion_label2"), num("emotion_mix", 0)
            if second and second != "none" and mix > 0:
                if second == first:
                    raise InputError(f"emotion blend: '{first}' twice; choose two different labels")
                out["emotion_control"] = EmotionControl(blend={first: 1 - mix, second: mix}, intensity=level
                                                        ).validate()
            else:
                out["emotion_control"] = EmotionControl(label=first, intensity=level).validate()
        elif v.get("emotion_mode") == "reference":
            ref = self.sandbox.input(v.get("emotion_video"), "emotion reference clip")
            if ref is None:
                raise InputError("emotion: 'mean expression of a clip' is chosen but no clip is uploaded")
            paths.append(ref)
            out["emotion_control"] = EmotionControl(reference=str(ref), intensity=level).validate()
        lip_level, mute = num("lip_level", 1.0), text("mute_spans")
        if lip_level != 1.0 or mute:
            out["lip_control"] = LipControl(intensity=lip_level, mute=parse_spans(mute) if mute else None
                                            ).validate()
        if out and self.settings.control_mapping:
            out["control_mapping"] = self.settings.control_mapping
        return out

    def build_job(self, v: dict) -> tuple[Path, Path | None, Any, list[Path | None]]:
        """(portrait, audio, AnimateOptions, every input path) from the widget values; raises InputError."""
        from ..pipeline import AnimateOptions

        sb = self.sandbox
        portrait = sb.input(v.get("portrait"), "portrait")
        if portrait is None:
            raise InputError("no portrait: upload a photo (or pick an example)")
        from ..media.face import load_image_rgb
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
            if mode in ("still", "off", "audio"):
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

        def number(key: str) -> float | None:
            x = v.get(key)
            if x is None or x == "":
                return self.defaults.get(key)
            x = float(x)
            if not math.isfinite(x) or not 0 <= x <= 5:
                raise InputError(f"{key.replace('_', ' ')}: {x} is outside 0..5")
            return x

        opt = AnimateOptions(
            lips=lips, pose=source("pose_mode", "pose_video", "head pose"), eyes="still", blink=blink, gaze=gaze,
            emotion=source("emotion_mode", "emotion_video", "emotion"),
            mouth_intensity=number("mouth_intensity"), pose_intensity=number("pose_intensity"),
            blink_intensity=number("blink_intensity"), gaze_intensity=number("gaze_intensity"),
            emotion_intensity=number("emotion_intensity"),
            layout=v.get("layout") or "result", precision=v.get("precision") or "exact",
            driving_mode=v.get("driving_mode") or "loop",
            max_frames=int(math.ceil(self.settings.max_seconds * FPS)), progress=False,
            **self.control_options(v, paths))
        from ..options import check_options
        check_options(opt)  # the one validation of option values (as the CLI and the API)
        return portrait, audio, opt, paths

    # preview: a few frames from the first seconds, no video written
    def preview(self, *args) -> tuple[list[tuple[np.ndarray, str]], str]:
        paths: list[Path | None] = []
        try:
            portrait, audio, opt, paths = self.build_job(self.values(*args))
            opt = dataclasses.replace(opt, max_frames=max(1, int(self.settings.preview_seconds * FPS)))
            from ..pipeline import FrameComposer

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


def describe_controls(opt) -> str:
    """One line naming the explicit controls a job uses (shown with the result)."""
    parts = []
    pc = getattr(opt, "pose_control", None)
    if pc is not None:
        d = [f"{ch}={getattr(pc, ch):g}" for ch in ("yaw", "pitch", "roll", "tx", "ty", "scale")
             if getattr(pc, ch) is not None]
        if pc.keyframes:
            d.append(f"{len(pc.keyframes)} keyframes, {pc.interpolation}")
        parts.append(f"pose {', '.join(d)} ({'relative' if pc.relative else 'absolute'})")
    bc = getattr(opt, "blink_control", None)
    if bc is not None:
        d = [f"at {', '.join(f'{t:g}' for t in bc.times)} s"] if bc.times else []
        d += [f"{bc.rate:g} per minute"] if bc.rate else []
        parts.append(f"blinks {' and '.join(d) or 'none'}, openness {bc.openness:g}")
    gc = getattr(opt, "gaze_control", None)
    if gc is not None:
        parts.append("gaze at the camera" if gc.camera else f"gaze {len(gc.keyframes)} keyframes" if gc.keyframes
                     else f"gaze h={gc.horizontal:g}, v={gc.vertical:g}")
    ec = getattr(opt, "emotion_control", None)
    if ec is not None:
        what = (f"{ec.label}" if ec.label else "mean of the reference clip" if ec.reference
                else " + ".join(f"{k} {w:g}" for k, w in ec.blend.items()))
        parts.append(f"emotion {what} at {ec.intensity:g}")
    lc = getattr(opt, "lip_control", None)
    if lc is not None:
        d = [f"level {lc.intensity:g}"] + ([f"muted {', '.join(f'{a:g}-{b:g}' for a, b in lc.mute)} s"]
                                           if lc.mute else [])
        parts.append(f"lips {', '.join(d)}")
    return f" Explicit controls: {'; '.join(parts)}." if parts else ""


def error_text(message: str) -> str:
    return f"**Error:** {message}"


# ---- the page -----------------------------------------------------------------------------------------------------
def _quiet_network_env() -> None:
    """No analytics, no update check, no hub telemetry: the app must not reach the internet."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def prepare_work_dir(settings: UISettings) -> Sandbox:
    """Create the app's upload and output areas and point gradio's upload cache at the former."""
    work = Path(settings.work_dir or tempfile.mkdtemp(prefix="pdfgc-ui-"))
    sandbox = Sandbox(work / "uploads", work / "outputs", settings.max_upload_mb)
    # gradio reads this for every upload and cache copy: every file the page receives lands here
    os.environ["GRADIO_TEMP_DIR"] = str(sandbox.upload_root)
    return sandbox


CSS = """
#status .prose, #status { min-height: 1.5em; }
#status strong { color: #c62828; }
"""


def build_app(pipe, settings: UISettings | None = None, sandbox: Sandbox | None = None):
    """The gradio Blocks page for `pipe` (a TalkingHeadPipeline)."""
    _quiet_network_env()
    import gradio as gr

    settings = settings or UISettings()
    sandbox = sandbox or prepare_work_dir(settings)
    backend = UIBackend(pipe, settings, sandbox)
    d = backend.defaults
    trained = pipe.model.config.trained
    factor_modes = FACTOR_MODES + [CONTROLS_MODE]
    emotion_modes = factor_modes + [EMOTION_REFERENCE_MODE]
    labels, mapping_line = backend.mapping_status()
    groups: dict[str, Any] = {}
    video_types = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif", ".png", ".jpg", ".jpeg"]
    audio_types = [".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".mp4", ".mov", ".mkv", ".webm"]

    with gr.Blocks(title="pdfgc", analytics_enabled=False, delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown("# pdfgc: one portrait, a talking head\nUpload a portrait and speech, choose where each "
                    "factor comes from, preview a few frames, render the mp4.")
        if not trained:
            gr.Markdown(f"**Model {pipe.model.config.name}: seeded random weights, not a trained model.** "
                        "Everything works end to end but faces come out as noise; start with "
                        "`pdfgc ui --weights FILE.safetensors` for real results.", elem_id="untrained")
        widgets: dict[str, Any] = {}
        with gr.Row():
            with gr.Column(scale=1):
                widgets["portrait"] = gr.File(label="Portrait (photo or 224x224 aligned crop)",
                                              file_types=[".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"],
                                              elem_id="portrait")
                crop = gr.Image(label="What the model sees", interactive=False, height=224, elem_id="crop")
                widgets["audio"] = gr.File(label="Speech (wav, mp3, m4a, ... or a video's sound)",
                                           file_types=audio_types, elem_id="audio")
                audio_status = gr.Markdown(elem_id="audio-status")
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Lips"):
                        widgets["lips_mode"] = gr.Radio(LIPS_MODES, value="audio", label="Lips", elem_id="lips-mode")
                        widgets["lips_video"] = gr.File(label="Video of a speaking mouth", file_types=video_types,
                                                        visible=False, elem_id="lips-video")
                        widgets["mouth_intensity"] = gr.Slider(0, 3, value=d["mouth_intensity"], step=0.05,
                                                               label="Mouth intensity (code multiplier)",
                                                               elem_id="mouth-intensity")
                        with gr.Row():
                            widgets["lip_level"] = gr.Slider(0, 2, value=1.0, step=0.05, elem_id="lip-level",
                                                             label="Lip motion (0 closed, 1 as the source, 2 "
                                                                   "exaggerated)")
                            widgets["mute_spans"] = gr.Textbox(label="Mouth closed during (seconds)",
                                                               placeholder="e.g. 1.0-1.5, 3-3.2",
                                                               elem_id="mute-spans")
                    with gr.Tab("Head pose"):
                        widgets["pose_mode"] = gr.Radio(factor_modes, value="still", label="Head pose",
                                                        elem_id="pose-mode")
                        widgets["pose_video"] = gr.File(label="Head motion video (or frame image)",
                                                        file_types=video_types, visible=False, elem_id="pose-video")
                        widgets["pose_intensity"] = gr.Slider(0, 3, value=d["pose_intensity"], step=0.05,
                                                              label="Pose intensity (code multiplier)",
                                                              elem_id="pose-intensity")
                        with gr.Group(visible=False, elem_id="pose-controls") as groups["pose"]:
                            gr.Markdown("Degrees: yaw > 0 turns the face toward the image's right, pitch > 0 "
                                        "lifts the chin, roll > 0 turns it clockwise. Keyframes set the "
                                        "channels they name over time (they take those channels from the "
                                        "sliders).")
                            preset = gr.Dropdown(["(none)"] + list(POSE_PRESETS), value="(none)",
                                                 label="Preset (fills the keyframes)", elem_id="pose-preset")
                            with gr.Row():
                                for ch in ("yaw", "pitch", "roll"):
                                    widgets[f"pose_{ch}"] = gr.Slider(-45, 45, value=0, step=1,
                                                                      label=f"{ch} (deg)",
                                                                      elem_id=f"pose-{ch}")
                            widgets["pose_keyframes"] = gr.Textbox(label="Keyframes (seconds: name=value)",
                                                                   placeholder="e.g. 0:yaw=0; 2:yaw=20,pitch=5",
                                                                   elem_id="pose-keyframes")
                            with gr.Row():
                                widgets["pose_interp"] = gr.Radio(["smooth", "linear", "cubic", "step"],
                                                                  value="smooth", label="Between keyframes",
                                                                  elem_id="pose-interp")
                                widgets["pose_absolute"] = gr.Checkbox(
                                    False, label="absolute angles (default: added to the portrait's pose)",
                                    elem_id="pose-absolute")
                            preset.change(lambda name: POSE_PRESETS.get(name, gr.update()), preset,
                                          widgets["pose_keyframes"])
                    with gr.Tab("Eyes"):
                        with gr.Row():
                            widgets["blink_mode"] = gr.Radio(factor_modes, value="still", label="Blinks",
                                                             elem_id="blink-mode")
                            widgets["gaze_mode"] = gr.Radio(factor_modes, value="still", label="Gaze",
                                                            elem_id="gaze-mode")
                        widgets["eyes_video"] = gr.File(label="Eye motion video (used by blinks and/or gaze)",
                                                        file_types=video_types, visible=False, elem_id="eyes-video")
                        with gr.Row():
                            widgets["blink_intensity"] = gr.Slider(0, 3, value=d["blink_intensity"], step=0.05,
                                                                   label="Blink intensity (code multiplier)",
                                                                   elem_id="blink-intensity")
                            widgets["gaze_intensity"] = gr.Slider(0, 3, value=d["gaze_intensity"], step=0.05,
                                                                  label="Gaze intensity (code multiplier)",
                                                                  elem_id="gaze-intensity")
                        with gr.Group(visible=False, elem_id="blink-controls") as groups["blink"]:
                            bpreset = gr.Dropdown(["(none)"] + list(BLINK_PRESETS), value="(none)",
                                                  label="Blink preset", elem_id="blink-preset")
                            with gr.Row():
                                widgets["blink_times"] = gr.Textbox(label="Blink at (seconds)",
                                                                    placeholder="e.g. 1, 3.5", scale=2,
                                                                    elem_id="blink-times")
                                widgets["blink_rate"] = gr.Slider(0, 60, value=15, step=1,
                                                                  label="and/or per minute (natural jitter)",
                                                                  elem_id="blink-rate")
                            with gr.Row():
                                widgets["blink_duration"] = gr.Slider(0.1, 0.8, value=0.2, step=0.05,
                                                                      label="Blink duration (s)",
                                                                      elem_id="blink-duration")
                                widgets["eye_openness"] = gr.Slider(0, 1, value=1, step=0.05,
                                                                    label="Eye openness between blinks",
                                                                    elem_id="eye-openness")

                            def blink_preset(name):
                                if name not in BLINK_PRESETS:
                                    return [gr.update()] * 4
                                times, rate, dur, openness = BLINK_PRESETS[name]
                                if times == "every4":
                                    times = ", ".join(f"{t:g}" for t in np.arange(2, settings.max_seconds, 4))
                                return [times, rate, dur, openness]
                            bpreset.change(blink_preset, bpreset, [widgets[k] for k in (
                                "blink_times", "blink_rate", "blink_duration", "eye_openness")])
                        with gr.Group(visible=False, elem_id="gaze-controls") as groups["gaze"]:
                            gpreset = gr.Dropdown(["(none)"] + list(GAZE_PRESETS), value="(none)",
                                                  label="Gaze preset", elem_id="gaze-preset")
                            widgets["gaze_camera"] = gr.Checkbox(False, label="look at the camera",
                                                                 elem_id="gaze-camera")
                            with gr.Row():
                                widgets["gaze_h"] = gr.Slider(-1, 1, value=0, step=0.05, elem_id="gaze-h",
                                                              label="horizontal (> 0 toward the image's right)")
                                widgets["gaze_v"] = gr.Slider(-1, 1, value=0, step=0.05, elem_id="gaze-v",
                                                              label="vertical (> 0 up)")
                            widgets["gaze_keyframes"] = gr.Textbox(label="or keyframes",
                                                                   placeholder="e.g. 0:camera; 1.5:h=0.5; "
                                                                               "3:h=-0.5,v=0.2",
                                                                   elem_id="gaze-keyframes")
                            gpreset.change(lambda name: list(GAZE_PRESETS[name]) if name in GAZE_PRESETS
                                           else [gr.update()] * 4, gpreset,
                                           [widgets[k] for k in ("gaze_camera", "gaze_h", "gaze_v",
                                                                 "gaze_keyframes")])
                    with gr.Tab("Emotion"):
                        widgets["emotion_mode"] = gr.Radio(emotion_modes, value="still", label="Emotion",
                                                           elem_id="emotion-mode")
                        widgets["emotion_video"] = gr.File(label="Expression video (or one image)",
                                                           file_types=video_types, visible=False,
                                                           elem_id="emotion-video")
                        widgets["emotion_intensity"] = gr.Slider(0, 3, value=d["emotion_intensity"], step=0.05,
                                                                 label="Emotion intensity (code multiplier)",
                                                                 elem_id="emotion-intensity")
                        with gr.Group(visible=False, elem_id="emotion-controls") as groups["emotion"]:
                            widgets["emotion_label"] = gr.Dropdown(labels, value="happy" if "happy" in labels else labels[0],
                                                                   label="Emotion", elem_id="emotion-label")
                            with gr.Row():
                                widgets["emotion_label2"] = gr.Dropdown(["none"] + labels, value="none",
                                                                        label="Blend with",
                                                                        elem_id="emotion-label2")
                                widgets["emotion_mix"] = gr.Slider(0, 1, value=0.5, step=0.05,
                                                                   label="Share of the second emotion",
                                                                   elem_id="emotion-mix")
                        widgets["emotion_level"] = gr.Slider(0, 1, value=1, step=0.05, visible=False,
                                                             label="Strength of the emotion or of the clip's "
                                                                   "expression (0 neutral .. 1)",
                                                             elem_id="emotion-level")
                    with gr.Tab("Output"):
                        widgets["layout"] = gr.Radio([("face (224x224)", "result"),
                                                      ("pasted back into the photo", "pasteback"),
                                                      ("official five-panel strip", "panels")],
                                                     value="result", label="Layout", elem_id="layout")
                        widgets["precision"] = gr.Radio([("exact (fp32)", "exact"), ("fast (bf16/fp16)", "fast")],
                                                        value="exact", label="Precision", elem_id="precision")
                        widgets["driving_mode"] = gr.Radio(["loop", "pingpong", "hold", "strict"], value="loop",
                                                           label="Driving clips shorter than the audio",
                                                           elem_id="driving-mode")
                gr.Markdown(mapping_line, elem_id="mapping-status")
                with gr.Row():
                    preview_btn = gr.Button("Preview frames", elem_id="preview-btn")
                    render_btn = gr.Button("Render video", variant="primary", elem_id="render-btn")
                status = gr.Markdown(elem_id="status")
                gallery = gr.Gallery(label="Preview", columns=settings.preview_frames, height=260, elem_id="preview")
                video = gr.Video(label="Result", interactive=False, height=400, elem_id="result-video")
                download = gr.File(label="Download the mp4", interactive=False, elem_id="result-file")

        gr.Examples(
            examples=[[str(EXAMPLES_DIR / "anne.png"), str(EXAMPLES_DIR / "speech.m4a"), "audio", "still", None,
                       "still", "still", None, "still", None],
                      [str(EXAMPLES_DIR / "anne.png"), str(EXAMPLES_DIR / "speech.m4a"), "audio", "video",
                       str(EXAMPLES_DIR / "head_motion.mp4"), "video", "video", str(EXAMPLES_DIR / "eye_motion.mp4"),
                       "video", str(EXAMPLES_DIR / "expression.jpg")]],
            inputs=[widgets[k] for k in ("portrait", "audio", "lips_mode", "pose_mode", "pose_video", "blink_mode",
                                         "gaze_mode", "eyes_video", "emotion_mode", "emotion_video")],
            label="Examples (shipped with the package: the official demo portrait, 4 s of its speech, VoxCeleb2 "
                  "driving clips; CC-BY-4.0)")

        inputs = [widgets[k] for k in backend.input_names()]

        # upload-time checks and the per-factor file boxes shown only when a video is the source
        widgets["portrait"].change(backend.check_portrait, widgets["portrait"], [crop, status])
        widgets["audio"].change(backend.check_audio, widgets["audio"], audio_status)
        for mode, box in (("lips_mode", "lips_video"), ("pose_mode", "pose_video")):
            widgets[mode].change(lambda m: gr.update(visible=m == "video"), widgets[mode], widgets[box])
        widgets["emotion_mode"].change(lambda m: gr.update(visible=m in ("video", "reference")),
                                       widgets["emotion_mode"], widgets["emotion_video"])
        widgets["emotion_mode"].change(lambda m: gr.update(visible=m in ("controls", "reference")),
                                       widgets["emotion_mode"], widgets["emotion_level"])
        for factor, group in groups.items():
            widgets[f"{factor}_mode"].change(lambda m: gr.update(visible=m == "controls"),
                                             widgets[f"{factor}_mode"], group)
        for mode in ("blink_mode", "gaze_mode"):
            widgets[mode].change(lambda b, g: gr.update(visible="video" in (b, g)),
                                 [widgets["blink_mode"], widgets["gaze_mode"]], widgets["eyes_video"])

        def ordered(data: dict) -> list:  # gradio passes a set of inputs as {component: value}
            return [data[c] for c in inputs]

        def do_preview(data: dict):
            return backend.preview(*ordered(data))

        def do_render(data: dict, request: gr.Request, progress=gr.Progress()):
            session = getattr(request, "session_hash", None)
            path, msg = backend.render(*ordered(data), session=session,
                                       progress=lambda f, desc: progress(f, desc=desc))
            return path, path, msg

        preview_btn.click(do_preview, set(inputs), [gallery, status])
        render_btn.click(do_render, set(inputs), [video, download, status])
    demo.queue(default_concurrency_limit=1, max_size=16)
    demo.pdfgc_sandbox = sandbox  # for launch() and the tests
    demo.pdfgc_backend = backend
    return demo


def theme():
    import gradio as gr
    # system fonts: the default theme would fetch web fonts from the internet
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def launch(demo, settings: UISettings, block: bool = True):
    """Serve `demo` on settings.host:port; returns (app, local_url) when block is False."""
    sandbox: Sandbox = demo.pdfgc_sandbox
    app, url, _ = demo.launch(
        server_name=settings.host, server_port=settings.port, share=False, inbrowser=False, ssr_mode=False,
        allowed_paths=[str(EXAMPLES_DIR), str(sandbox.output_root)], max_file_size=f"{settings.max_upload_mb:g}mb",
        show_error=True, quiet=True, prevent_thread_lock=not block, theme=theme(), css=CSS, mcp_server=False,
        pwa=False, enable_monitoring=False)
    return app, url


def run_ui(pipe, settings: UISettings) -> None:
    """`pdfgc ui`: build, serve until interrupted, then remove the app's temp folders."""
    check_settings(settings)
    own_work_dir = settings.work_dir is None
    sandbox = prepare_work_dir(settings)
    demo = build_app(pipe, settings, sandbox)
    print(f"pdfgc ui: serving on http://{settings.host}:{settings.port} (uploads and outputs under "
          f"{sandbox.upload_root.parent}; Ctrl+C stops)", flush=True)
    try:
        launch(demo, settings, block=True)
    finally:
        # uvicorn's graceful shutdown can wait on open connections: close with a bound, then clean up regardless
        closer = threading.Thread(target=demo.close, daemon=True, name="pdfgc-ui-close")
        closer.start()
        closer.join(timeout=10)
        if own_work_dir:
            shutil.rmtree(sandbox.upload_root.parent, ignore_errors=True)
