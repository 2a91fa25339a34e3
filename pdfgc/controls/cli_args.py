"""`pdfgc animate` flags for the explicit controls, and their translation into AnimateOptions fields.

Each control's own flags and their reading live with the control (``add_arguments`` / ``from_args`` in
pdfgc/controls/explicit.py); this module only groups them and adds the mapping file. Kept out of cli.py so the
shared CLI file only gains two calls. Precedence is documented in families/pdfgc/controls/apply.py: a control overrides
its own part of the code; the other parts follow their sources.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..families.pdfgc.controls.mapping import mapping_path_for
from .explicit import CONTROL_TYPES


def add_control_arguments(g) -> None:
    """The explicit controls' flags, into argument group `g` (the mapping file's --controls is the PD-FGC family's
    own option: families/pdfgc/options.py)."""
    for control in CONTROL_TYPES.values():
        control.add_arguments(g)


def controls_from_args(args: argparse.Namespace) -> dict:
    """AnimateOptions overrides for the control flags of `args` (also moves a `--gaze H,V|camera` to the gaze
    control). Empty when no control flag is set."""
    out: dict = {}
    for control in CONTROL_TYPES.values():
        out.update(control.from_args(args))
    if getattr(args, "control_mapping", None):
        out["control_mapping"] = args.control_mapping
    elif getattr(args, "official_checkpoints", None):
        cand = mapping_path_for(Path(args.official_checkpoints))
        if cand.is_file():
            out["control_mapping"] = str(cand)
    return out
