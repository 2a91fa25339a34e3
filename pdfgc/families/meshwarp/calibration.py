"""Per-portrait pose calibration: requested head angles -> the angles to render so that mediapipe reads the request.

The warp re-applies an out-of-plane rotation with the portrait's mediapipe depths (``warp.WarpRenderer``'s depth
gain), and how far a rendered turn reads back depends on the face: its size in the crop, its framing and the
depths mediapipe estimated for it. One global gain read ``--pitch 15`` as 16-26 deg over six unseen portraits and
let ``--yaw 20`` leak up to 4.7 deg into pitch and roll (issue 23). So the first time a plan turns the head, the
portrait renders a few probe rotations (yaw and pitch at three sizes each way, roll at one), measures them back as
``pdfgc evaluate`` does (``signals.head_pose`` of the face mesh, as a change from the portrait's own reading) and
keeps the response: per axis, a monotone cubic (PCHIP) through the probes from that axis's render angle to the
measured (yaw, pitch, roll) change, cross-talk included. A request is inverted through the sum of the three curves
(Newton steps on their Jacobian), so the render reads the requested angles on that face and leaks little into the
others (each probe is read twice, on the frame and on a half-pixel shifted copy: one reading moves by 0.3-1 deg).
Beyond the outermost probe each curve continues along its end slope, and the correction is bounded
(``MAX_CORRECTION``) inside the solve. The single-axis curves do not add up exactly when the render mixes angles to
cancel cross-talk, so the loop is then closed (``refine``): a few requests (``REFINE``), and through
``PoseCalibration.refine_at`` the angles a plan actually holds (``held_requests``), are rendered as inverted, read
back and corrected once or twice; the corrections are interpolated along each axis from 0 at 0.

``calibrate_leak`` does the same for what a plan's mouth and expression changes alone read as (a raised brow reads
as pitch), so a driven pose is rendered less that reading.

Cost: 30 renders and 60 face-mesh readings (0.8 s median per portrait in wall time on the loaded benchmark machine,
benchmarks/results/meshwarp/controls.md), ``refine_at`` up to 2 more of each per held angle; the leak: up to 6
more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...evaluation import signals as S

# probe render angles per axis (deg), both signs: sizes that bracket what users ask, so a request is interpolated,
# not extrapolated. Asked yaw +-30 renders at 34-36 deg on most faces (the read-back flattens toward a large turn)
# and asked pitch +-20 at 22-26: with outer probes at 28 (yaw) / 20 (pitch) those requests ran along the end slope
# and missed by 2-5 deg (benchmarks/results/meshwarp/controls.md, issue 23). A probe that misreads ends its side
# (the probes inside it are kept).
PROBES = {0: (12.0, 26.0, 38.0), 1: (10.0, 20.0, 28.0), 2: (12.0,)}
# a measured slope outside this range means the probe misread (a lost face, a flipped fit, a torn render)
SLOPE_RANGE = (0.4, 2.5)
# each probe frame is read twice, as it is and shifted by half a pixel (``jittered``): mediapipe's reading of one
# frame moves by 0.3-1 deg (up to 2 at 30 deg of yaw) under such a shift, and the cross-talk the inversion cancels
# is of that size, so one reading's noise became cross-talk
READINGS = 2
# closed loop (one correction step) at these request sizes per axis, both signs: the probes are single-axis turns,
# but a render that cancels cross-talk mixes the three, and the warp's answer to a mix is not the sum of its answers
# (on anne.png yaw -30 with roll +2.2 and pitch -0.9 read pitch -2.1 where the sum predicts 0); so the request is
# rendered as inverted, read, and the residual corrected once through the curves' Jacobian. Corrections between
# these sizes are interpolated linearly from 0 at 0 (so a ramp or a pose video stays smooth); at most
# REFINE_MAX deg each (a larger residual is a face past the warp's range: not chased); a frame whose two readings
# disagree by more than READ_SPREAD_MAX deg is not corrected on (the 95th percentile of that disagreement over the
# benchmark's renders is 0.9 deg, its worst 4.3); a residual under REFINE_DONE deg is left alone. Yaw 30 and pitch
# 20 too: on some faces the read-back bends sharply between the outer probes (Macron.png reads pitch -0.6 at a plain
# yaw of -26 and -4.3 at -30), so a correction interpolated between 24 and 36 missed it by 3-4 deg
# (benchmarks/results/meshwarp/xtalk_s32.md)
REFINE = {0: (12.0, 24.0, 30.0, 36.0), 1: (8.0, 16.0, 20.0, 24.0)}
REFINE_MAX = 8.0
# a REFINE size whose first residual is above this (deg) is stepped a second time (the one Gauss-Newton step on the
# curves' Jacobian undershoots where the read-back bends between the probes); inf: never. With REFINE_AGAIN_CROSS
# only the cross-talk (the angles not asked) counts and is stepped on; the asked angle keeps its first correction
REFINE_AGAIN = float("inf")
REFINE_AGAIN_CROSS = False
# how far the second step's change reaches into neighbouring requests, as a share of the way to the next refine size
# (or to 0) on each side: 1.0 interpolates it like the first step's correction (linear to the next size); below 1
# it is kept apart (``PoseCalibration.again``) and its weight falls linearly from 1 at its own size to 0 at that
# share of the way (0: at its own size only)
REFINE_AGAIN_REACH = 1.0
# a frame whose READINGS readings disagree by more than READ_SPREAD_MAX is read in the rest of READ_VIEWS too and
# taken as the mean of all (``read_sure``), instead of being left alone (a refine size) or taken as it read
READ_MORE = False
# the zero change's reading (a0, what every probe is measured from) is the portrait's own mesh, read once; with
# ZERO_VIEWS > 1 it is the mean of that and the unchanged render read in READ_VIEWS[1:ZERO_VIEWS]
ZERO_VIEWS = 1
READ_SPREAD_MAX = 1.5
REFINE_DONE = 0.2
# refine_at: at most this many new request sizes per call (a plan that holds many)
MAX_ASKED_REFINE = 8
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
    # closed-loop corrections: per axis (request sizes (K,), render angle corrections (K,3)); empty: none
    refined: tuple = ()
    # second refine steps kept apart (REFINE_AGAIN_REACH < 1): per axis (sizes (K,), render angle changes (K,3))
    again: tuple = ()

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
            # (scipy.interpolate is imported here, not at start-up: 0.3-0.7 s a job without a turn need not pay)
            from scipy.interpolate import PchipInterpolator
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
        """(T,3) wanted measured angle changes -> (T,3) render angle changes that give them: the curves' inverse
        plus the closed-loop corrections (``refined``)."""
        want = np.asarray(wanted, np.float64).reshape(-1, 3)
        x = self._invert_curves(want, iterations)
        if self.refined:
            cap = MAX_CORRECTION * np.abs(want).max(1, keepdims=True) + 2.0
            x = np.clip(x + self.correction(want), want - cap, want + cap)
            x[(want == 0).all(1)] = 0.0
        return x

    def correction(self, want: np.ndarray) -> np.ndarray:
        """(T,3) closed-loop corrections for (T,3) requests: per axis, linear in that axis's request between the
        refined sizes (0 at 0, held beyond the largest), summed over the axes."""
        out = np.zeros_like(want)
        for a, (sizes, corr) in enumerate(self.refined):
            if len(sizes) == 0:
                continue
            k = np.concatenate([sizes, [0.0]])
            order = np.argsort(k)
            k, c = k[order], np.concatenate([corr, np.zeros((1, 3))])[order]
            for j in range(3):
                out[:, j] += np.interp(want[:, a], k, c[:, j])
        for a, (sizes, delta) in enumerate(self.again):
            if len(sizes):
                out += self._again_weights(a, want[:, a], np.asarray(sizes)) @ np.asarray(delta)
        return out

    def _again_weights(self, a: int, w: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """(T,K) weights of the second steps kept apart at ``sizes`` of axis a for requests ``w``: 1 at the size,
        0 from REFINE_AGAIN_REACH of the way to the neighbouring refine size (or 0) on that side (the inner side's
        distance beyond the outermost)."""
        k = np.unique(np.concatenate([np.asarray(self.refined[a][0], np.float64), [0.0]]))
        out = np.zeros((len(w), len(sizes)))
        for i, s in enumerate(sizes):
            lo, hi = k[k < s - 1e-9], k[k > s + 1e-9]
            d_lo = s - lo[-1] if len(lo) else None
            d_hi = hi[0] - s if len(hi) else None
            d_lo, d_hi = d_lo or d_hi, d_hi or d_lo
            reach = REFINE_AGAIN_REACH * np.where(w < s, d_lo, d_hi)
            out[:, i] = np.where(np.abs(w - s) < 1e-6, 1.0,
                                 np.clip(1.0 - np.abs(w - s) / np.maximum(reach, 1e-12), 0.0, 1.0))
        return out

    def refine_at(self, wanted, limit: int = MAX_ASKED_REFINE, iterations: int = 2, again_over: float = 0.0,
                  again_cross: bool = False) -> int:
        """Close the loop at these single-axis requests (rows with one non-zero angle; others are skipped): render
        each as ``invert`` gives it, read it back (``read_angles``), and keep the render correction that one
        Gauss-Newton step on the curves' Jacobian makes of the residual, as a ``refined`` knot of that axis
        (``iterations`` such steps; none once the residual is under ``REFINE_DONE``, nor after the first where
        its residual was under ``again_over``; with ``again_cross`` that residual and the later steps are the
        cross-talk's only: the angles not asked).
        At most ``limit`` new knots; a size within 0.25 deg of a knot, an axis left 1:1 and a calibration made
        without a renderer (``PoseCalibration(...)``) are skipped. Returns the number of knots added."""
        loop = getattr(self, "_loop", None)
        if loop is None or not self.refined:
            return 0
        a0, render_angles, measure = loop
        ident = PoseCalibration.identity()
        refined = [list(map(np.asarray, r)) for r in self.refined]
        added = 0
        for row in np.asarray(wanted, np.float64).reshape(-1, 3):
            nz = np.flatnonzero(row)
            if len(nz) != 1 or added >= limit:
                continue
            a = int(nz[0])
            if np.array_equal(self.knots[a], ident.knots[a]) or np.any(np.abs(refined[a][0] - row[a]) < 0.25):
                continue
            want = row[None]
            first = np.inf
            for it in range(iterations):
                if it > 0 and first <= again_over:
                    break
                x = self.invert(want)
                r = read_sure(render_angles(x[0]), measure)
                # a lost face, or two readings of the one frame that disagree (mediapipe unsure of this view):
                # nothing to correct on (with READ_MORE: read in every view, the mean of all)
                if r is None or (len(r) <= READINGS and np.ptp(r, 0).max() > READ_SPREAD_MAX):
                    break
                got = r.mean(0) - a0
                if again_cross:   # only the cross-talk counts: the asked angle as if it landed
                    got[a] = want[0, a] if it > 0 else got[a]
                if it == 0:
                    first = np.abs(np.delete(want[0] - got, a) if again_cross else want[0] - got).max()
                done = np.abs(want[0] - got).max() < REFINE_DONE   # lands already: keep the render as it is
                _, jac = self.forward(x)
                if done:
                    step = 0.0
                elif again_cross and it > 0:   # the cross-talk only, with the render angles not asked
                    o = [b for b in range(3) if b != a]
                    step = np.zeros(3)
                    step[o] = np.linalg.solve(jac[0][np.ix_(o, o)], (want[0] - got)[o])
                else:
                    step = np.linalg.solve(jac[0], want[0] - got)
                if np.abs(step).max() > REFINE_MAX or (done and it > 0):
                    break
                # stored as the whole correction from the curves' own inverse (the interpolated one included)
                corr = x[0] - self._invert_curves(want, 8)[0] + step
                k, c = refined[a]
                if it == 0:
                    refined[a] = (np.append(k, row[a]), np.vstack([c, corr]))
                    added += 1
                elif REFINE_AGAIN_REACH < 1.0:   # kept apart: it reaches less far than the first correction
                    again = [list(map(np.asarray, g)) for g in self.again] or \
                        [[np.zeros(0), np.zeros((0, 3))] for _ in range(3)]
                    gk, gc = again[a]
                    keep = np.abs(gk - row[a]) >= 1e-9   # a later step at this size replaces its earlier one
                    # at its own size the correction becomes corr, as if it were interpolated (weight 1 there)
                    again[a] = [np.append(gk[keep], row[a]), np.vstack([gc[keep], corr - c[-1]])]
                    self.again = tuple(tuple(g) for g in again)
                else:
                    c = c.copy()
                    c[-1] = corr
                    refined[a] = (k, c)
                self.refined = tuple(tuple(r) for r in refined)
                if done:
                    break
        return added

    def _invert_curves(self, want: np.ndarray, iterations: int) -> np.ndarray:
        # a face that cannot turn further (its own pose near the warp's limit) would ask for a huge render angle
        # that tears the face: the correction stays within half the request (+ 2 deg of cross-talk correction).
        # The bound is part of the solve (projected Gauss-Newton): an angle held at its bound leaves the other two
        # to cancel the cross-talk of the angle actually rendered (clipping after the solve left them cancelling
        # that of the unbounded angle: 11 deg of yaw from a pitch request on a face already at pitch 27)
        cap = MAX_CORRECTION * np.abs(want).max(1, keepdims=True) + 2.0
        lo, hi = want - cap, want + cap
        x = want.copy()
        for _ in range(iterations):
            f, jac = self.forward(x)
            r = (want - f)[..., None]
            step = np.linalg.solve(jac, r)[..., 0]
            out = ((x + step > hi + 1e-9) | (x + step < lo - 1e-9)).any(1)
            if out.any():
                from scipy.optimize import lsq_linear
            for i in np.flatnonzero(out):   # least squares within the bounds (few rows: those at the limit)
                step[i] = lsq_linear(jac[i], r[i, :, 0], bounds=(lo[i] - x[i] - 1e-12, hi[i] - x[i] + 1e-12)).x
            x = np.clip(x + step, lo, hi)
        x[(want == 0).all(1)] = 0.0   # no change asked: exactly the portrait (identity renders stay bit-exact)
        return x

    def to_dict(self) -> dict:
        out = {"knots": [k.tolist() for k in self.knots], "response": [r.round(3).tolist() for r in self.response],
               "refined": [[np.asarray(k).tolist(), np.asarray(c).round(3).tolist()] for k, c in self.refined]}
        return out | ({"again": [[np.asarray(k).tolist(), np.asarray(c).round(3).tolist()] for k, c in self.again]}
                      if self.again else {})


def jittered(frame):
    """The frame shifted by half a pixel right and down (edges replicated): a second, independent reading of it.
    None for what is not an image (a synthetic measure's points)."""
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[2] != 3:
        return None
    import cv2
    return cv2.warpAffine(f, np.float32([[1, 0, 0.5], [0, 1, 0.5]]), (f.shape[1], f.shape[0]),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# the views a frame is read in (x shift px, y shift px, scale about the centre), in order: the frame itself, the
# ``jittered`` copy, then two more half-pixel shifts and a 1.5 % rescale each way. ``read_all`` reads the first
# ``readings``; benchmarks/meshwarp_controls.py reads all six (its averaged meter, results/meshwarp/xtalk_s33.md)
READ_VIEWS = ((0.0, 0.0, 1.0), (0.5, 0.5, 1.0), (0.5, 0.0, 1.0), (0.0, 0.5, 1.0), (0.0, 0.0, 1.015),
              (0.0, 0.0, 0.985))


def view(frame, k: int):
    """The frame as ``READ_VIEWS[k]`` sees it (k=0: the frame itself, k=1: ``jittered``); None for what is not an
    image."""
    f = np.asarray(frame)
    if k == 0:
        return frame
    if f.ndim != 3 or f.shape[2] != 3:
        return None
    if k == 1:
        return jittered(f)
    import cv2
    dx, dy, s = READ_VIEWS[k]
    cx, cy = 0.5 * (f.shape[1] - 1), 0.5 * (f.shape[0] - 1)
    m = np.float32([[s, 0, cx - s * cx + dx], [0, s, cy - s * cy + dy]])
    return cv2.warpAffine(f, m, (f.shape[1], f.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def read_all(frame, measure, readings: int = READINGS) -> np.ndarray | None:
    """(R,3) head angles of a frame read ``readings`` times (in the first ``readings`` of ``READ_VIEWS``: the
    frame, then its ``jittered`` copy, ...; one reading of what is not an image); None when the face is lost in any."""
    frames = [view(frame, k) for k in range(readings)]
    out = []
    for f in frames:
        if f is None:
            continue
        m = measure(f)
        if m is None:
            return None
        out.append(S.head_pose(np.asarray(m, np.float64)[None])[0])
    return np.array(out)


def read_sure(frame, measure, readings: int = READINGS) -> np.ndarray | None:
    """``read_all``, and with READ_MORE, where its readings disagree by more than READ_SPREAD_MAX, the frame read in
    every READ_VIEWS (mediapipe unsure of this view: the mean of more readings is surer)."""
    r = read_all(frame, measure, readings)
    if READ_MORE and r is not None and len(r) > 1 and np.ptp(r, 0).max() > READ_SPREAD_MAX:
        more = read_all(frame, measure, len(READ_VIEWS))
        r = r if more is None else more
    return r


def read_angles(frame, measure, readings: int = READINGS) -> np.ndarray:
    """(3,) head angles of a frame, the mean of ``read_all``; NaN when the face is lost in any."""
    r = read_sure(frame, measure, readings)
    return np.full(3, np.nan) if r is None else r.mean(0)


def calibrate_pose(own_mesh, render_angles, measure) -> PoseCalibration:
    """Probe one portrait. ``own_mesh``: the (478,3) mesh measured on the portrait itself (the zero change's
    reading); ``render_angles(d)``: (3,) yaw, pitch, roll change -> a frame; ``measure(frame)``: its (478,3) face
    mesh or None. Returns the ``PoseCalibration``: per axis and side, the probes from the smallest outward up to the
    first that misreads (lost face, slope outside ``SLOPE_RANGE``); an axis with a side left unprobed stays 1:1."""
    m0 = np.asarray(own_mesh, np.float64)
    ident = PoseCalibration.identity()
    # the zero change's reading is the portrait's own mesh: what `pdfgc evaluate` measures changes from
    a0 = S.head_pose(m0[None])[0]
    if ZERO_VIEWS > 1:
        frame = render_angles(np.zeros(3))
        more = [view(frame, k) for k in range(1, ZERO_VIEWS)]
        ms = [measure(f) for f in more if f is not None]
        if ms and all(m is not None for m in ms):
            a0 = np.mean([a0] + [S.head_pose(np.asarray(m, np.float64)[None])[0] for m in ms], 0)
    knots, resp = [], []
    for a in range(3):
        sides = []
        for sign in (1.0, -1.0):
            ks, rs, prev = [], [], (0.0, 0.0)
            for v in PROBES[a]:
                d = np.zeros(3)
                d[a] = sign * v
                r = read_angles(render_angles(d), measure) - a0
                slope = (r[a] - prev[1]) / (sign * v - prev[0])
                if not np.isfinite(r).all() or not SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]:
                    break
                ks.append(sign * v)
                rs.append(r)
                prev = (sign * v, r[a])
            sides.append((ks, rs))
        (kp, rp), (kn, rn) = sides
        if not kp or not kn:
            knots.append(ident.knots[a])
            resp.append(ident.response[a])
            continue
        knots.append(np.array(kn[::-1] + [0.0] + kp))
        resp.append(np.array(rn[::-1] + [np.zeros(3)] + rp))
    cal = PoseCalibration(tuple(knots), tuple(resp))
    return refine(cal, a0, render_angles, measure)


def held_requests(angles, min_frames: int = 2) -> np.ndarray:
    """(K,3) the distinct single-axis angle requests a plan's (T,3) requested angle changes hold for at least
    ``min_frames`` frames in a row (an explicit ``--yaw 30``, a step or a keyframe's hold), in order of first use:
    what ``PoseCalibration.refine_at`` closes the loop on."""
    x = np.round(np.asarray(angles, np.float64).reshape(-1, 3), 3)
    out = []
    run = 1
    for t in range(1, len(x) + 1):
        if t < len(x) and (x[t] == x[t - 1]).all():
            run += 1
            continue
        row = x[t - 1]
        if run >= min_frames and (row != 0).sum() == 1 and not any((row == o).all() for o in out):
            out.append(row)
        run = 1
    return np.array(out).reshape(-1, 3)


def refine(cal: PoseCalibration, a0, render_angles, measure, sizes: dict = REFINE) -> PoseCalibration:
    """``cal`` with closed-loop corrections at the ``REFINE`` sizes (``PoseCalibration.refine_at``), and able to
    add more at the sizes a plan asks."""
    out = PoseCalibration(cal.knots, cal.response, tuple((np.zeros(0), np.zeros((0, 3))) for _ in range(3)))
    out._loop = (np.asarray(a0, np.float64), render_angles, measure)
    rows = [np.eye(3)[a] * sign * v for a in sorted(sizes) for v in sizes[a] for sign in (1.0, -1.0)]
    again = np.isfinite(REFINE_AGAIN)
    out.refine_at(np.array(rows).reshape(-1, 3), limit=len(rows), iterations=2 if again else 1,
                  again_over=REFINE_AGAIN if again else 0.0, again_cross=REFINE_AGAIN_CROSS)
    return out


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
