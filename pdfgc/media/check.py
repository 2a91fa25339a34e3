"""Decode a file whole, as the renderer would, and say whether it is good: the child process of the web UI's
upload check (`pdfgc/ui/probe.py`). Run as `python -m pdfgc.media.check KIND ROLE PATH`; exit 0 (good), 2 with
one `probe-error: ...` line on stdout (an InputError), anything else: the decoder crashed. Imports only the
media readers (no torch, no gradio), so a check costs a fraction of a second of CPU."""
from __future__ import annotations

import sys

from ..errors import InputError

ERROR_PREFIX = "probe-error: "


def decode_whole(kind: str, role: str, path: str) -> None:
    """Decode `path` whole as the render would (InputError when it is bad)."""
    if kind == "image":
        from .images import load_image_rgb
        load_image_rgb(path)  # its messages name the file as the page shows it
        return
    from .audio_io import decode_speech, open_media
    with open_media(path, role) as c:
        has_audio, has_video = bool(c.streams.audio), bool(c.streams.video)
    if not (has_audio or has_video):
        raise InputError(f"{role} {path}: no audio or video track")
    if has_audio:
        decode_speech(path, role)
    if has_video:
        from .video import iter_video_frames
        for _ in iter_video_frames(path, fps=None, source=role):
            pass


def main(argv: list[str]) -> int:
    kind, role, path = argv
    try:
        decode_whole(kind, role, path)
    except InputError as e:
        print(ERROR_PREFIX + " ".join(str(e).split()), flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
