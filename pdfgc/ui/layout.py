"""The gradio page (`build_app`): the widgets and their wiring to `UIBackend`; gradio is imported only here, when
the page is built (the `ui` extra)."""
from __future__ import annotations

import contextlib
import itertools
from typing import Any

import numpy as np

from ..controls.forms import widget as control_widget
from ..option_fields import Option, web_fields
from ..options import AnimateOptions
from .callbacks import UIBackend
from .sandbox import Sandbox, prepare_work_dir
from .settings import (
    AUTO_MODE,
    BLINK_PRESETS,
    CONTROLS_MODE,
    EMOTION_REFERENCE_MODE,
    EXAMPLES_DIR,
    FACTOR_MODES,
    GAZE_PRESETS,
    LIPS_MODES,
    POSE_PRESETS,
    UISettings,
    _quiet_network_env,
)

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

        def option_fields(tab: str) -> None:
            """The options' own fields on `tab`, generated from their declarations (pdfgc/options.py and each
            family's options.py); fields with the same row key side by side."""
            fields = web_fields(AnimateOptions, tab)
            for _, row in itertools.groupby(fields, key=lambda f: f[1].web.row or f[0]):
                row = list(row)
                with gr.Row() if len(row) > 1 else contextlib.nullcontext():
                    for name, decl, _ in row:
                        widgets[name] = option_widget(gr, name, decl, backend.defaults[name], pipe)
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
                        option_fields("Lips")
                        with gr.Row():
                            widgets["lip_level"] = control_widget(gr, "lip_level")
                            widgets["mute_spans"] = control_widget(gr, "mute_spans")
                    with gr.Tab("Head pose"):
                        widgets["pose_mode"] = gr.Radio(factor_modes + [AUTO_MODE], value="still", label="Head pose",
                                                        elem_id="pose-mode")
                        widgets["pose_video"] = gr.File(label="Head motion video (or frame image)",
                                                        file_types=video_types, visible=False, elem_id="pose-video")
                        option_fields("Head pose")
                        with gr.Group(visible=False, elem_id="pose-controls") as groups["pose"]:
                            gr.Markdown("Degrees: yaw > 0 turns the face toward the image's right, pitch > 0 "
                                        "lifts the chin, roll > 0 turns it clockwise. Keyframes set the "
                                        "channels they name over time (they take those channels from the "
                                        "sliders).")
                            preset = gr.Dropdown(["(none)"] + list(POSE_PRESETS), value="(none)",
                                                 label="Preset (fills the keyframes)", elem_id="pose-preset")
                            with gr.Row():
                                for ch in ("yaw", "pitch", "roll"):
                                    widgets[f"pose_{ch}"] = control_widget(gr, f"pose_{ch}")
                            widgets["pose_keyframes"] = control_widget(gr, "pose_keyframes")
                            with gr.Row():
                                widgets["pose_interp"] = control_widget(gr, "pose_interp")
                                widgets["pose_absolute"] = control_widget(gr, "pose_absolute")
                            preset.change(lambda name: POSE_PRESETS.get(name, gr.update()), preset,
                                          widgets["pose_keyframes"])
                    with gr.Tab("Eyes"):
                        with gr.Row():
                            widgets["blink_mode"] = gr.Radio(factor_modes + [AUTO_MODE], value="still", label="Blinks",
                                                             elem_id="blink-mode")
                            widgets["gaze_mode"] = gr.Radio(factor_modes, value="still", label="Gaze",
                                                            elem_id="gaze-mode")
                        widgets["eyes_video"] = gr.File(label="Eye motion video (used by blinks and/or gaze)",
                                                        file_types=video_types, visible=False, elem_id="eyes-video")
                        option_fields("Eyes")
                        with gr.Group(visible=False, elem_id="blink-controls") as groups["blink"]:
                            bpreset = gr.Dropdown(["(none)"] + list(BLINK_PRESETS), value="(none)",
                                                  label="Blink preset", elem_id="blink-preset")
                            with gr.Row():
                                widgets["blink_times"] = control_widget(gr, "blink_times")
                                widgets["blink_rate"] = control_widget(gr, "blink_rate")
                            with gr.Row():
                                widgets["blink_duration"] = control_widget(gr, "blink_duration")
                                widgets["eye_openness"] = control_widget(gr, "eye_openness")

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
                            widgets["gaze_camera"] = control_widget(gr, "gaze_camera")
                            with gr.Row():
                                widgets["gaze_h"] = control_widget(gr, "gaze_h")
                                widgets["gaze_v"] = control_widget(gr, "gaze_v")
                            widgets["gaze_keyframes"] = control_widget(gr, "gaze_keyframes")
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
                        option_fields("Emotion")
                        with gr.Group(visible=False, elem_id="emotion-controls") as groups["emotion"]:
                            first = "happy" if "happy" in labels else labels[0]
                            widgets["emotion_label"] = control_widget(gr, "emotion_label", choices=labels, value=first)
                            with gr.Row():
                                widgets["emotion_label2"] = control_widget(gr, "emotion_label2",
                                                                           choices=["none"] + labels)
                                widgets["emotion_mix"] = control_widget(gr, "emotion_mix")
                        widgets["emotion_level"] = control_widget(gr, "emotion_level")
                    with gr.Tab("Output"):
                        option_fields("Output")
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

        def do_render(data: dict, request: gr.Request = None, progress=gr.Progress()):
            # (the request has a default only for gradio's argument count: gradio injects it by its annotation)
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


def option_widget(gr, name: str, decl: Option, value, pipe):
    """The gradio widget of one declared option (`decl.web`), starting at `value`; hidden where this model does not
    read it (another family's option, or `web.shown` says no)."""
    w = decl.web
    visible = (decl.family is None or decl.family == pipe.family.name) and (w.shown is None or w.shown(pipe.model))
    common = dict(label=w.label, elem_id=name.replace("_", "-"), visible=visible)
    if w.widget == "slider":
        lo, hi, step = w.range
        return gr.Slider(lo, hi, value=value, step=step, **common)
    if w.widget == "radio":
        return gr.Radio(list(w.choices or decl.choices), value=value, **common)
    if w.widget == "checkbox":
        return gr.Checkbox(value, **common)
    raise ValueError(f"option {name}: unknown web widget {w.widget!r}")


def theme():
    import gradio as gr
    # system fonts: the default theme would fetch web fonts from the internet
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])
