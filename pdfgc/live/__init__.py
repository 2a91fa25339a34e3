"""Live sessions: speech in as it arrives, frames out at 25 fps (``session.py``)."""
from .session import DEFAULT_HOP, LiveControls, LiveFrame, LiveSession

__all__ = ["LiveSession", "LiveControls", "LiveFrame", "DEFAULT_HOP"]
