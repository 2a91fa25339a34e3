"""Explicit controls on the PD-FGC codes: fitted linear maps from physical values (degrees, openness, gaze) to codes
(`mapping.py`), how they are fitted (`fit.py`) and applied to a plan (`apply.py`)."""
