"""The follow benchmark's check that mediapipe read each rendered eye where it is drawn (issue 23, session 34:
benchmarks/results/meshwarp/eyes_s34.md)."""

import importlib.util
from pathlib import Path

import numpy as np

from pdfgc.media.mesh_indices import EAR_POINTS

ROOT = Path(__file__).resolve().parents[1]


def _controls():
    spec = importlib.util.spec_from_file_location("meshwarp_controls", ROOT / "benchmarks/meshwarp_controls.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_an_eye_read_away_from_the_drawn_one_is_measured_in_its_eye_widths():
    mc = _controls()
    rng = np.random.default_rng(0)
    target = rng.uniform(50, 150, (3, 478, 3))
    for e, a in enumerate((10.0, 100.0)):  # eye 0: 20 px wide, eye 1: 30 px wide
        target[:, EAR_POINTS[e], :2] = np.array([a + 15.0, 80.0 + 20.0 * e])
        target[:, EAR_POINTS[e][0], 0], target[:, EAR_POINTS[e][3], 0] = a, a + 20.0 + 10.0 * e
    read = target.copy()
    read[1, EAR_POINTS[1], 1] -= 9.0  # frame 1: eye 1 read 9 px (0.3 of its 30 px) above the drawn one
    read[2, EAR_POINTS[0], :2] = np.nan  # frame 2: no face read
    d = mc.eye_misplacement(read, target)
    assert d[0] == 0.0
    assert abs(d[1] - 0.3) < 1e-9 and d[1] > mc.PLACED
    assert np.isinf(d[2])
