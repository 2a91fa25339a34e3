"""`pdfgc live`: a local page where the portrait speaks with the microphone (or an audio file).

Transport: one WebSocket (starlette/uvicorn, already installed with the UI's stack; `websockets` serves it): raw
float32 PCM up and JPEG frames down over one ordered, loss-free connection on 127.0.0.1 needs no media negotiation
or STUN/ICE that WebRTC (aiortc/fastrtc) would bring, and the session's own frame dropping handles lag.

Protocol (JSON text messages + binary):
  client -> {"type": "start", "portrait": "example" | data URL (png/jpeg), "sample_rate": 48000}
  client -> binary: float32 little-endian mono samples at that rate, any chunk size
  client -> {"type": "controls", ...LiveControls fields}
  server -> {"type": "ready", "size": S, "emotions": [labels]} | {"type": "error", "message": ...}
  server -> {"type": "stats", "frame": i, "dropped": n, "mouth": max |mouth code|}
  server -> binary: one JPEG per frame (4-byte little-endian frame index first)
One session at a time (this 2-core machine cannot serve two at 25 fps): a second connection is refused with a
message. Uploads: at most ``MAX_UPLOAD_MB``, decoded with OpenCV in memory (never written to disk).
"""
from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError, PDFGCError

EXAMPLE = Path(__file__).resolve().parents[1] / "ui" / "examples" / "anne.png"
MAX_UPLOAD_MB = 10
JPEG_QUALITY = 85
PAGE = Path(__file__).with_name("page.html")


def decode_portrait(spec: str) -> np.ndarray | Path:
    """'example' or a data URL -> the shipped example's path or an RGB array (InputError: anything else)."""
    if spec in (None, "", "example"):
        return EXAMPLE
    if not isinstance(spec, str) or not spec.startswith("data:image/") or "," not in spec:
        raise InputError("portrait: send 'example' or an image as a data URL")
    raw = base64.b64decode(spec.split(",", 1)[1], validate=False)
    if len(raw) > MAX_UPLOAD_MB * 2 ** 20:
        raise InputError(f"portrait: larger than {MAX_UPLOAD_MB} MB")
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError("portrait: not a readable image (png or jpeg)")
    return np.ascontiguousarray(img[..., ::-1])


def build_app(pipe):
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocketDisconnect

    from .session import LiveControls, LiveSession

    busy = threading.Lock()

    async def page(request):
        return HTMLResponse(PAGE.read_text())

    async def ws(websocket):
        await websocket.accept()
        if not busy.acquire(blocking=False):
            await websocket.send_text(json.dumps({"type": "error", "message": "pdfgc live: another session is "
                                                  "running; this machine serves one at a time"}))
            await websocket.close(code=1013)
            return
        session = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                msg = await websocket.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("bytes") is not None:
                    if session is None:
                        raise InputError("send a start message before audio")
                    samples = np.frombuffer(msg["bytes"], "<f4")
                    frames = await loop.run_in_executor(None, session.push, samples)
                    for f in frames:
                        ok, jpg = cv2.imencode(".jpg", f.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                        await websocket.send_bytes(struct.pack("<I", f.index) + jpg.tobytes())
                    if frames:
                        await websocket.send_text(json.dumps({
                            "type": "stats", "frame": frames[-1].index, "dropped": session.dropped,
                            "mouth": float(np.abs(frames[-1].mouth).max())}))
                    continue
                data = json.loads(msg.get("text") or "{}")
                if data.get("type") == "start":
                    if session is not None:
                        session.close()
                    portrait = decode_portrait(data.get("portrait"))
                    rate = int(data.get("sample_rate", 16000))
                    if not 8000 <= rate <= 192000:
                        raise InputError(f"sample rate {rate}: 8000..192000 Hz")
                    session = await loop.run_in_executor(None, lambda: LiveSession(
                        portrait, LiveControls(), pipeline=pipe, sample_rate=rate, max_delay=1.0))
                    await websocket.send_text(json.dumps({"type": "ready", "size": session.state.size,
                                                          "rules": session.rules,
                                                          "lookahead_ms": session.lookahead_ms,
                                                          "emotions": sorted(pipe.family.params.emotion_shapes)}))
                elif data.get("type") == "controls":
                    if session is None:
                        raise InputError("send a start message before controls")
                    known = set(LiveControls.__dataclass_fields__)
                    session.set_controls(**{k: v for k, v in data.items() if k in known})
                else:
                    raise InputError(f"unknown message type {data.get('type')!r}")
        except (InputError, PDFGCError, ValueError, TypeError) as e:
            try:
                await websocket.send_text(json.dumps({"type": "error", "message": str(e)}))
                await websocket.close(code=1003)
            except Exception:   # the client went away meanwhile
                pass
        except WebSocketDisconnect:
            pass
        finally:
            if session is not None:
                session.close()
            busy.release()

    return Starlette(routes=[Route("/", page), WebSocketRoute("/ws", ws)])


def server_config(app, host: str, port: int):
    """The uvicorn settings `pdfgc live` serves `app` with (the browser test serves the same)."""
    import uvicorn
    from uvicorn.config import WS_PROTOCOLS

    # the `websockets` library's sans-I/O protocol where this uvicorn has it (its legacy one warns as deprecated)
    ws = "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"
    return uvicorn.Config(app, host=host, port=port, log_level="warning", ws=ws, ws_max_size=2 ** 24)


def run_live(pipe, host: str = "127.0.0.1", port: int = 7861) -> None:
    import uvicorn
    config = server_config(build_app(pipe), host, port)
    print(f"pdfgc live: serving on http://{host}:{port} (Ctrl+C stops)", flush=True)
    uvicorn.Server(config).run()
