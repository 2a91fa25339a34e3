"""The eye white under a moved iris (``eyes._sclera_fill``): the portrait's own sclera, inside the uncovered disc only.

The synthetic eye is drawn with numpy (no face mesh); the anne.png checks use the session's measured mesh.
"""
import cv2
import numpy as np
import pytest

from pdfgc.families.meshwarp import eyes as E
from pdfgc.families.meshwarp import topology
from pdfgc.families.meshwarp.shapes import poly_mask
from pdfgc.families.meshwarp.warp import WarpRenderer, shift_irises
from pdfgc.media.mesh_indices import IRIS

SKIN = np.array([200, 150, 120], np.float32)
WHITE = np.array([228, 214, 210], np.float32)   # a slightly pink eye white
IRIS_RGB = np.array([90, 60, 40], np.float32)
LASH = np.array([40, 30, 30], np.float32)


def synthetic_eye(h=40, w=64):
    """(roi, disc, open_m, d, edge): an almond opening of eye white on skin, a dark lash band over its top edge, a
    brown iris of radius 7 (the mediapipe-like radius 6.5, its edge at 1.08 radii) in the middle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = w / 2, h / 2
    opening = ((xx - cx) / 26.0) ** 2 + ((yy - cy) / 9.0) ** 2 <= 1.0
    roi = np.broadcast_to(SKIN, (h, w, 3)).copy()
    shade = 1.0 - 0.08 * np.abs(xx - cx)[..., None] / 26.0    # the white darkens a little toward the corners
    roi[opening] = (WHITE * shade)[opening]
    top = cy - 9.0 * np.sqrt(np.clip(1 - ((xx - cx) / 26.0) ** 2, 0, 1))   # the opening's upper edge
    lash = (np.abs(yy - top) < 1.6) & (np.abs(xx - cx) < 24)
    roi[lash] = LASH
    radius = 6.5
    d = np.hypot(xx - cx, yy - cy) / radius
    iris = (d <= 7.0 / radius) & opening
    roi[iris] = IRIS_RGB
    roi = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
    open_m = cv2.GaussianBlur(opening.astype(np.float32), (0, 0), 0.6)
    grow = cv2.dilate((open_m > 0.02).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3)
    disc = (d <= 1.25) & (grow > 0)
    return roi, disc, open_m, d, 7.0 / radius


def _fill(roi, disc, open_m, d, edge):
    inpainted = cv2.inpaint(np.ascontiguousarray(roi), disc.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return E._sclera_fill(roi, disc, open_m, d, edge, inpainted), inpainted


def test_fill_changes_only_the_disc_and_is_the_eye_white_not_lilac_grey():
    roi, disc, open_m, d, edge = synthetic_eye()
    out, telea = _fill(roi, disc, open_m, d, edge)
    assert out is not None and out.shape == roi.shape and out.dtype == np.uint8
    assert (out[~disc] == roi[~disc]).all()    # nothing outside the disc is touched
    inside = disc & (open_m > 0.9)
    got = out[inside].astype(np.float32)
    # the eye white beside it (a few levels of its corner shading), with no iris left and no lash dragged in
    assert np.abs(got.mean(0) - WHITE).max() < 12, got.mean(0)
    assert got.min(1).min() > 170, got.min(1).min()
    lum = got @ [0.299, 0.587, 0.114]
    assert lum.std() < 6.0
    # TELEA, the old fill, pulls the iris's rim and the lashes into the same pixels: darker and greyer
    old = telea[inside].astype(np.float32)
    assert (old @ [0.299, 0.587, 0.114]).mean() < lum.mean() - 5


def test_fill_gives_up_without_visible_sclera():
    roi, disc, open_m, d, edge = synthetic_eye()
    hidden = np.where(disc[..., None] | (open_m[..., None] < 0.5), roi, IRIS_RGB.astype(np.uint8))
    full_iris = np.full_like(open_m, 0.0)   # an opening the iris fills: no sclera sample at all
    assert _fill(hidden, disc, full_iris, d, edge)[0] is None


@pytest.fixture(scope="module")
def anne_eyes(anne_face):
    img, mesh = anne_face
    return img, mesh, E.EyeParts(img, mesh)


def _disc(mesh, e, size, reach=1.25):
    it = mesh[list(IRIS[e]), :2]
    c, r = it.mean(0), np.linalg.norm(it[1:] - it[0], axis=1).mean()
    yy, xx = np.mgrid[0:size, 0:size]
    return np.hypot(xx - c[0], yy - c[1]) / r, poly_mask((size, size), mesh[list(topology.EYE_POLYGONS[e]), :2], (0, 0))


def test_anne_white_stays_in_the_iris_disc_and_is_her_sclera(anne_eyes):
    img, mesh, parts = anne_eyes
    changed = (parts._sclera != img).any(2)
    lum = img.astype(np.float64) @ [0.299, 0.587, 0.114]
    near = np.zeros_like(changed)
    for e in range(2):
        d, opening = _disc(mesh, e, len(img))
        near |= d <= 1.3
        inside = (d < 1.0) & (opening > 0.9)
        sclera = (opening > 0.9) & (d > 1.3) & (d < 2.5)
        sclera &= lum >= np.quantile(lum[sclera], 0.33)
        want = np.median(img[sclera].astype(np.float64), 0)
        got = parts._sclera[inside].astype(np.float64).mean(0)
        assert np.abs(got - want).max() < 25, (e, got, want)
    assert changed.any() and not (changed & ~near).any()   # only inside the iris discs


def test_unmoved_eye_is_the_portrait(anne_face):
    img, mesh = anne_face
    out, aux = WarpRenderer(img, mesh).render(mesh, return_aux=True)
    assert (out == img).all() and aux["eyes"].sum() > 50
    # and a gaze moved in one direction changes the eyes only
    moved = WarpRenderer(img, mesh).render(shift_irises(mesh, 0.2))
    diff = (moved != img).any(2)
    yy = np.nonzero(diff)[0]
    eye_rows = mesh[np.concatenate([topology.EYE_POLYGONS[0], topology.EYE_POLYGONS[1]]), 1]
    assert diff.any() and yy.min() >= eye_rows.min() - 6 and yy.max() <= eye_rows.max() + 6


def test_moved_disc_leaves_the_lid_hidden_ring_behind(anne_face, monkeypatch):
    """A vertical move (under IRIS_MOVED's radii, so the disc keeps its wide ring) carried the part of the ring that
    anne's lids hid, filled with the iris's mean colour, as a dark arc across the eye white under an upturned iris
    (issue 23, gaze_s31.md): with ``IRIS_HIDDEN_RING`` that band shows the eye white."""
    img, mesh = anne_face
    target = shift_irises(mesh, 0.0, -0.12)   # both irises up by 0.12 eye widths, the lids where they were
    lum = {}
    for on in (False, True):
        monkeypatch.setattr(E, "IRIS_HIDDEN_RING", on)
        out = WarpRenderer(img, mesh).render(target).astype(np.float64) @ [0.299, 0.587, 0.114]
        band = np.zeros(out.shape, bool)
        for e in range(2):
            d, opening = _disc(target, e, len(img))
            below = np.mgrid[0:len(img), 0:len(img)][0] > target[IRIS[e][0], 1]
            band |= (d > 1.15) & (d < 1.4) & (opening > 0.9) & below
        lum[on] = out[band]
    assert len(lum[True]) > 10
    # the band under the iris is the eye white with the fix, darker (the iris's colour) without it
    assert lum[True].mean() > lum[False].mean() + 10, (lum[True].mean(), lum[False].mean())
    parts = E.EyeParts(img, mesh)
    for e in range(2):   # the visibility is 1 over the iris and 0 past its edge where the lids hid the eye
        d, opening = _disc(mesh, e, len(img))
        edge = parts._eye_src[e]["edge"]
        assert (parts._iris_vis[d < edge - 0.05] == 1.0).all()
        hidden = (d > edge + 0.1) & (d < 1.6) & (opening < 0.02)
        assert hidden.any() and parts._iris_vis[hidden].max() < 0.1
        # an unmoved disc keeps every pixel the render composites (channel 0); a moved one drops the lid margin too
        shown = (d > edge + 0.1) & (d < 1.6) & (opening > 0.5)
        assert (parts._iris_vis[shown, 0] == 1.0).all() and parts._iris_vis[shown, 1].min() < 0.5


def test_a_half_shut_eye_lies_in_its_lids_shadow(anne_face, monkeypatch):
    """A half-shut eye looking aside drew the warped open eye's white at full brightness in its 3-4 px slit: a small
    white eye with the iris as a dark blob at its end (issue 19, the README main command's frames 98 and 196-197,
    closing_s31.md). With ``SLIT_SHADE`` the opening is in the lowered lid's shadow, darkest under the margin, the
    iris no brighter; an open eye (looking aside too) is untouched."""
    from pdfgc.families.meshwarp.warp import close_eyes

    img, mesh = anne_face
    lum = np.array([0.299, 0.587, 0.114])
    half = close_eyes(shift_irises(mesh, 0.15), 0.55)
    got = {}
    for shade in (0.0, E.SLIT_SHADE):
        monkeypatch.setattr(E, "SLIT_SHADE", shade)
        r = WarpRenderer(img, mesh)
        got[shade] = (r.render(half).astype(np.float64) @ lum, r.render(shift_irises(mesh, 0.15)))
    assert E.SLIT_SHADE > 0.0 and (got[0.0][1] == got[E.SLIT_SHADE][1]).all()  # the open eye: no change
    before, after = got[0.0][0], got[E.SLIT_SHADE][0]
    for e in range(2):
        d, opening = _disc(half, e, len(img))
        white = (opening > 0.9) & (d > 1.4)
        iris = (opening > 0.9) & (d < 0.8)
        assert white.sum() > 5 and iris.sum() > 3
        assert after[white].mean() < before[white].mean() - 15, (after[white].mean(), before[white].mean())
        assert after[iris].mean() <= before[iris].mean() + 0.5
    # the shadow: full strength at the upper contour, none SLIT_DEPTH eye widths below it
    up = half[list(E.EYE_UPPER[0]), :2]
    x, y = (int(round(v)) for v in up[len(up) // 2])
    width = 20.0
    sh = E.EyeParts._slit_shadow(half, 0, (x - 2, y - 10, x + 3, y + 12), width, 0.5)
    assert sh[:8].max() == pytest.approx(0.5, abs=0.05) and sh[-1].max() == 0.0
    assert (np.diff(sh[10:, 2]) <= 1e-6).all()


def test_a_half_shut_eyes_lower_band_is_toned_to_its_lower_lid(anne_face, monkeypatch):
    """Under a half-shut lid mediapipe read the pale lower part of the slit and the lower lid's waterline as the
    opening (its lower contour below the target's; session 32, lidslit_s32.md). With ``WATERLINE_SHADE`` the band
    from ``WATERLINE_UP`` eye widths above the target's lower contour to ``WATERLINE_DEPTH`` below it is toned toward
    the lower lid's skin in shadow; an open eye (looking aside too) is bit-identical, and nothing changes further
    down the lower lid."""
    from pdfgc.families.meshwarp.warp import close_eyes

    img, mesh = anne_face
    lum = np.array([0.299, 0.587, 0.114])
    half = close_eyes(shift_irises(mesh, 0.15), 0.55)
    got = {}
    for shade in (0.0, 1.0):
        monkeypatch.setattr(E, "WATERLINE_SHADE", shade)
        r = WarpRenderer(img, mesh)
        got[shade] = (r.render(half), r.render(shift_irises(mesh, 0.15)), r.render(mesh))
    assert (got[0.0][1] == got[1.0][1]).all() and (got[0.0][2] == got[1.0][2]).all()   # open eyes: no change
    before, after = (got[k][0].astype(np.float64) for k in (0.0, 1.0))
    size = len(img)
    yy, xx = np.mgrid[0:size, 0:size]
    for e in range(2):
        lo = half[list(E.EYE_LOWER[e]), :2]
        lo = lo[np.argsort(lo[:, 0])]
        width = float(np.linalg.norm(half[E.EAR_POINTS[e, 0], :2] - half[E.EAR_POINTS[e, 3], :2]))
        mid = (xx > lo[0, 0] + 0.3 * width) & (xx < lo[-1, 0] - 0.3 * width)
        d = yy - np.interp(xx, lo[:, 0], lo[:, 1])
        band = mid & (d > -0.5) & (d < 1.0)
        far = mid & (d > E.WATERLINE_DEPTH * width + 2) & (d < E.WATERLINE_DEPTH * width + 6)
        assert band.sum() > 3 and far.sum() > 3
        tone = E.WATERLINE_TONE * WarpRenderer(img, mesh).parts[0]._eye_src[e]["lowlid"] @ lum
        # its pale pixels toward the lower lid's shadowed skin, nothing below the band
        pale = band & (before @ lum > tone + 10)
        assert pale.sum() >= 2 and (after[pale] @ lum).mean() < (before[pale] @ lum).mean() - 5
        assert (after[band] @ lum).mean() < (before[band] @ lum).mean()
        assert (after[far] == before[far]).all()
    # the profile: full from WATERLINE_UP above the contour down to it, none WATERLINE_DEPTH below it
    x, y = (int(round(v)) for v in half[E.EYE_LOWER[0][4], :2])
    width = 60.0
    for up in (0.0, 0.1):
        monkeypatch.setattr(E, "WATERLINE_UP", up)
        col = E.EyeParts._waterline_shade(half, 0, (x - 2, y - 10, x + 3, y + 10), width, 0.5)[:, 2]
        assert col.max() == pytest.approx(0.5, abs=0.15) and col[0] == 0.0 and col[-1] == 0.0
        assert (np.diff(col[11:]) <= 1e-6).all()
        assert (col[:10] > 0.4).sum() == (5 if up else 0)   # 0.1 x 60 = 6 px above: rows 1-5 px above full
