"""Serving the page: `launch` (gradio's server on the configured host and port, no network features) and
`run_ui` (`pdfgc ui`: build, serve until interrupted, clean up)."""
from __future__ import annotations

import shutil
import threading

from .layout import CSS, build_app, theme
from .sandbox import Sandbox, prepare_work_dir
from .settings import EXAMPLES_DIR, UISettings, check_settings


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
    demo = None
    try:  # every exit path below removes the folder: an error building the page, Ctrl+C, SIGTERM/SIGHUP (main()
        # turns them into KeyboardInterrupt); a native crash cannot happen in this process (uploads are decoded in
        # a child first, probe.py)
        demo = build_app(pipe, settings, sandbox)
        print(f"pdfgc ui: serving on http://{settings.host}:{settings.port} (uploads and outputs under "
              f"{sandbox.upload_root.parent}; Ctrl+C stops)", flush=True)
        launch(demo, settings, block=True)
    finally:
        work = sandbox.upload_root.parent

        def remove() -> None:
            if own_work_dir:
                shutil.rmtree(work, ignore_errors=True)

        def close() -> None:
            try:
                demo.close()
            finally:
                remove()  # gradio may write into its temp folder while closing: remove it again after

        if demo is not None:
            # uvicorn's graceful shutdown can wait on open connections: close with a bound, then clean up
            closer = threading.Thread(target=close, daemon=True, name="pdfgc-ui-close")
            closer.start()
            closer.join(timeout=10)
        remove()
