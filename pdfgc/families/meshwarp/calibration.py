"""Per-portrait pose calibration: requested head angles -> the angles to render so that mediapipe reads the request.

The warp re-applies an out-of-plane rotation with the portrait's mediapipe depths (``warp.WarpRenderer``'s depth
gain), and how far a rendered turn reads back depends on the face: its size in the crop, its framing and the
depths mediapipe estimated for it. One global gain read ``--pitch 15`` as 16-26 deg over six unseen portraits and
let ``--yaw 20`` leak up to 4.7 deg into pitch and roll (issue 23). So the first time a plan turns the head, the
portrait renders a few probe rotations (yaw, pitch and roll at two sizes each way), measures them back as
``pdfgc evaluate`` does (``signals.head_pose`` of the face mesh, as a change from the portrait's own reading) and
keeps the response: per axis, a monotone cubic (PCHIP) through the probes from that axis's render angle to the
measured (yaw, pitch, roll) change, cross-talk included. A request is inverted through the sum of the three curves
(Newton steps on their Jacobian), so the render reads the requested angles on that face and leaks little into the
others (the probes' own reading noise is ~0.3 deg). Beyond the outermost probe each curve continues along its end
slope, and the correction is bounded (``MAX_CORRECTION``).

``calibrate_leak`` does the same for what a plan's mouth and expression changes alone read as (a raised brow reads
as pitch), so a driven pose is rendered less that reading.

Cost: 10 probe renders and face-mesh readings, 0.15 s of CPU per 224 px portrait, 0.3 s at 512 px (one core);
the leak: up to 6 more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

from ...evaluation import signals as S

# probe render angles per axis (deg), both signs: two sizes so the curve bends the way the read-back does (the
# response flattens or steepens toward a large turn); yaw reaches furthest as users ask for it most
PROBES = {0: (12.0, 28.0), 1: (10.0, 20.0), 2: (12.0,)}
# a measured slope outside this range means the probe misread (a lost face, a flipped fit): that axis stays 1:1
SLOPE_RANGE = (0.4, 2.5)
# the render angle differs from the request by at most this share of it (+ 2 deg; see PoseCalibration.invert)
MAX_CORRECTION = 0.5
# shape-change leak (calibrate_leak): principal directions of the plan's mouth + emotion changes probed, and a
# single reading's noise (deg): a leak smaller than twice it over the plan's range is left alone
LEAK_DIRECTIONS = 3
LEAK_NOISE_DEG = 0.3


@dataclass
class PoseCalibration:
    """The response of one portrait's render to requested angle changes.

    ``knots[a]`` (K,) render angles of axis a (0 included, ascending); ``response[a]`` (K,3) the measured
    (yaw, pitch, roll) change at each. ``identity()`` is the uncalibrated 1:1 map."""

    knots: tuple
    response: tuple

    @staticmethod
    def identity() -> "PoseCalibration":
        knots, resp = [], []
        for a in range(3):
            k = np.array([-1.0, 0.0, 1.0])
            r = np.zeros((3, 3))
            r[:, a] = k
            knots.append(k)
            resp.append(r)
        return PoseCalibration(tuple(knots), tuple(resp))

    def _curves(self):
        if getattr(self, "_pchip", None) is None:
            # monotone cubic through the probes: follows the read-back's bend between them (a piecewise-linear
            # curve misses by ~1 deg at 25 deg between probes at 12 and 28 on a shallow face)
            self._pchip = [PchipInterpolator(k, r, axis=0) for k, r in zip(self.knots, self.response)]
            self._dpchip = [c.derivative() for c in self._pchip]
        return self._pchip, self._dpchip

    def forward(self, render: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T,3) render angle changes -> (T,3) predicted measured changes and (T,3,3) Jacobian d measured / d render.
        Beyond the outermost probes each curve continues along its end slope."""
        render = np.asarray(render, np.float64).reshape(-1, 3)
        curves, slopes = self._curves()
        out = np.zeros_like(render)
        jac = np.zeros((len(render), 3, 3))
        for a in range(3):
            k = self.knots[a]
            x = render[:, a]
            xc = np.clip(x, k[0], k[-1])
            slope = slopes[a](xc)
            out += curves[a](xc) + slope * (x - xc)[:, None]
            jac[:, :, a] = slope
        return out, jac

    def invert(self, wanted, iterations: int = 8) -> np.ndarray:
        """(T,3) wanted measured angle changes -> (T,3) render angle changes that give them."""
        want = np.asarray(wanted, np.float64).reshape(-1, 3)
        x = want.copy()
        for _ in range(iterations):
            f, jac = self.forward(x)
            step = np.linalg.solve(jac, (want - f)[..., None])[..., 0]
            x = x + step
        # a face that cannot turn further (its own pose near the warp's limit) would ask for a huge render angle
        # that tears the face: the correction stays within half the request (+ 2 deg of cross-talk correction)
        cap = MAX_CORRECTION * np.abs(want).max(1, keepdims=True) + 2.0
        x = np.clip(x, want - cap, want + cap)
        x[(want == 0).all(1)] = 0.0   # no change asked: exactly the portrait (identity renders stay bit-exact)
        return x

    def to_dict(self) -> dict:
        return {"knots": [k.tolist() for k in self.knots], "response": [r.round(3).tolist() for r in self.response]}


def calibrate_pose(own_mesh, render_angles, measure) -> PoseCalibration:
    """Probe one portrait. ``own_mesh``: the (478,3) mesh measured on the portrait itself (the zero change's
    reading); ``render_angles(d)``: (3,) yaw, pitch, roll change -> a frame; ``measure(frame)``: its (478,3) face
    mesh or None. Returns the ``PoseCalibration`` (an axis whose probes fail stays 1:1)."""
    m0 = np.asarray(own_mesh, np.float64)
    ident = PoseCalibration.identity()
    a0 = S.head_pose(m0[None])[0]
    knots, resp = [], []
    for a in range(3):
        xs = sorted([-v for v in PROBES[a]] + [0.0] + list(PROBES[a]))
        rows = []
        for x in xs:
            if x == 0.0:
                rows.append(np.zeros(3))
                continue
            d = np.zeros(3)
            d[a] = x
            m = measure(render_angles(d))
            rows.append(S.head_pose(m[None])[0] - a0 if m is not None else np.full(3, np.nan))
        r = np.array(rows)
        k = np.array(xs)
        slopes = np.diff(r[:, a]) / np.diff(k)
        if not np.isfinite(r).all() or slopes.min() < SLOPE_RANGE[0] or slopes.max() > SLOPE_RANGE[1]:
            knots.append(ident.knots[a])
            resp.append(ident.response[a])
            continue
        knots.append(k)
        resp.append(r)
    return PoseCalibration(tuple(knots), tuple(resp))


def calibrate_leak(changes, render_shape, measure, directions: int = LEAK_DIRECTIONS) -> np.ndarray | None:
    """(D,3) head angles read per unit of a plan's shape change (mouth + emotion codes), or None for no change.

    mediapipe reads an expression as a small turn (the expression clip of meshwarp_targets.py alone reads as 3-4
    deg of pitch range on anne.png, with the target mesh's rigid points unmoved). The plan's (T,D) ``changes`` are
    probed along their ``directions`` principal directions, each rendered at the 2nd and 98th percentile of the
    plan's own projections (shapes the plan really reaches) by ``render_shape(v)`` and measured (``measure``);
    the slopes make a linear map."""
    x = np.nan_to_num(np.asarray(changes, np.float64))
    if not np.abs(x).max(initial=0.0) > 1e-6:
        return None
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    leak = np.zeros((x.shape[1], 3))
    for k in range(min(directions, int((sv > 1e-3 * sv[0]).sum()))):
        proj = x @ vt[k]
        lo, hi = np.quantile(proj, [0.02, 0.98])
        if hi - lo < 1e-6:
            continue
        m_lo, m_hi = measure(render_shape(lo * vt[k])), measure(render_shape(hi * vt[k]))
        if m_lo is None or m_hi is None:
            continue
        slope = (S.head_pose(m_hi[None])[0] - S.head_pose(m_lo[None])[0]) / (hi - lo)
        # keep only what the two probes clearly show (each reading is +-0.3 deg or so)
        if np.abs(slope * (hi - lo)).max() < 2 * LEAK_NOISE_DEG or not np.isfinite(slope).all():
            continue
        leak += np.outer(vt[k], slope)
    return leak
