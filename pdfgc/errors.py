"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class PDFGCError(Exception):
    """A problem with the user's input or set-up, stated so the user can fix it."""


class InputError(PDFGCError):
    """A bad input file or argument; the message names the file and the problem."""


class CheckpointError(PDFGCError):
    """A missing, truncated or mismatched weights file; the message names the file and the first offending key."""


class FaceNotFoundError(InputError):
    """No usable face in an image or video frame."""
