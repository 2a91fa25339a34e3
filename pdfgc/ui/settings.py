"""The web page's settings and fixed choices: where the examples are, the sources and presets each factor offers,
the widget values a render takes, `UISettings` and their check, and the no-network environment."""
from __future__ import annotations

import errno
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..controls.forms import FORM_FIELDS
from ..errors import InputError
from ..option_fields import web_fields
from ..options import AnimateOptions

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


# factor -> the sources the page offers, as (label, value); "video" means the factor's uploaded clip
LIPS_MODES = [("from the audio", "audio"), ("from a video", "video"), ("still (the portrait's mouth)", "still"),
              ("off", "off")]


FACTOR_MODES = [("still (the portrait's own)", "still"), ("from a video", "video"), ("off", "off")]


CONTROLS_MODE = ("explicit controls", "controls")


AUTO_MODE = ("natural (generated from the speech)", "auto")   # head pose and blinks only (--pose/--blink auto)


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


# the widget values a render takes, in the order the page passes them (see UIBackend.values): the inputs and
# each factor's source, then the options' own fields (generated from their declarations: pdfgc/options.py and
# each family's options.py)
SOURCE_INPUTS = (
    "portrait", "audio",
    "lips_mode", "lips_video",
    "pose_mode", "pose_video",
    "blink_mode", "gaze_mode", "eyes_video",
    "emotion_mode", "emotion_video",
)
OPTION_INPUTS = tuple(name for name, _, _ in web_fields(AnimateOptions))
BASE_INPUTS = SOURCE_INPUTS + OPTION_INPUTS

# the explicit controls' widgets: their fields, declared with the controls' web adapter (pdfgc/controls/forms.py)
CONTROL_INPUTS = FORM_FIELDS


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


def _quiet_network_env() -> None:
    """No analytics, no update check, no hub telemetry: the app must not reach the internet."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
