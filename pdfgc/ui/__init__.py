"""Web UI (`pdfgc ui`): a gradio page over TalkingHeadPipeline. Needs the `ui` extra (pip install "pdfgc[ui]")."""
from .app import EXAMPLES_DIR, Sandbox, UIBackend, UISettings, build_app, launch, run_ui

__all__ = ["EXAMPLES_DIR", "Sandbox", "UIBackend", "UISettings", "build_app", "launch", "run_ui"]
