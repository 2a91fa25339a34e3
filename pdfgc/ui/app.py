"""The web UI: a gradio Blocks app over TalkingHeadPipeline (`pdfgc ui`).

Everything the page can do goes through `UIBackend`, whose methods take plain widget values, so the callbacks are
testable without a browser. Safety, in one place:
  * inputs are read only from gradio's upload area (a private folder per app run) or the examples shipped in the
    package; any other path is refused before it is opened (`Sandbox.input`);
  * outputs are written only under a per-session folder of the app's own output area;
  * uploads are capped in size (gradio's own `max_file_size` plus our check) and audio/video in duration;
  * nothing is fetched from the internet: analytics and hub telemetry are off, the theme uses system fonts.

Split along its seams (as LivePortrait splits its gradio app): ``settings.py`` (the fixed choices, UISettings),
``sandbox.py`` (where the page reads and writes), ``callbacks.py`` (UIBackend), ``layout.py`` (the gradio page)
and ``server.py`` (launch, run_ui); this module keeps their names importable.
"""
from .callbacks import UIBackend, error_text
from .layout import CSS, build_app, theme
from .sandbox import Sandbox, media_seconds, prepare_work_dir, user_message
from .server import launch, run_ui
from .settings import (
    BASE_INPUTS,
    BLINK_PRESETS,
    CONTROL_INPUTS,
    CONTROLS_MODE,
    EMOTION_REFERENCE_MODE,
    EXAMPLES_DIR,
    FACTOR_MODES,
    GAZE_PRESETS,
    LIPS_MODES,
    POSE_PRESETS,
    UISettings,
    check_settings,
)

__all__ = ["BASE_INPUTS", "BLINK_PRESETS", "CONTROL_INPUTS", "CONTROLS_MODE", "CSS", "EMOTION_REFERENCE_MODE",
           "EXAMPLES_DIR", "FACTOR_MODES", "GAZE_PRESETS", "LIPS_MODES", "POSE_PRESETS", "Sandbox", "UIBackend",
           "UISettings", "build_app", "check_settings", "error_text", "launch", "media_seconds", "prepare_work_dir",
           "run_ui", "theme", "user_message"]
