"""The sliding lid (``lids="skin"``, pdfgc/families/meshwarp/lids.py ``sliding_lid``): an open eye is exactly the
warp's, a closing lid covers the eyeball down to the target's margin (plus, well shut, its lash row hung under it) and
no further, a shut one hides the iris under the portrait's own lid skin with its lashes below the margin, and what
mediapipe reads back closes with the request."""
import cv2
import numpy as np
import pytest

from pdfgc.evaluation import signals as S
from pdfgc.families.meshwarp import lids, topology
from pdfgc.families.meshwarp.shapes import poly_mask
from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, rotate_mesh, shift_irises
from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER, IRIS


@pytest.fixture(scope="module")
def skin(anne_face):
    return WarpRenderer(*anne_face, lids="skin")


def _eye_frame_coords(mesh, e, shape):
    """(u, t, upper lid t at u) of every pixel in the eye frame of `mesh` (lids._eye_frame's units: eye widths)."""
    a, ax, n, w = lids._eye_frame(mesh, e)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    u = ((xx - a[0]) * ax[0] + (yy - a[1]) * ax[1]) / w
    t = ((xx - a[0]) * n[0] + (yy - a[1]) * n[1]) / w
    top = np.interp(np.clip(u, 0, 1), *lids._upper_curve(mesh, e, (a, ax, n, w)))
    return u, t, top, w


def test_open_eyes_are_exactly_the_warp(anne_face, skin):
    img, mesh = anne_face
    bare = WarpRenderer(img, mesh, lids=False)
    assert (skin.render(mesh) == img).all()
    for target in (rotate_mesh(mesh, yaw=12, pitch=-6), shift_irises(mesh, 0.1, 0.05)):
        out, aux = skin.render(target, return_aux=True)
        assert aux["lids"].max() == 0.0
        assert (out == bare.render(target)).all()
    # an eye opened wider: no lid either; the iris disc keeps the iris round under the raised lid (eyes.widened),
    # inside the target's openings only
    wide = close_eyes(mesh, -0.2)
    out, aux = skin.render(wide, return_aux=True)
    assert aux["lids"].max() == 0.0
    diff = (out != bare.render(wide)).any(2)
    assert diff.any() and not (diff & (aux["eyes"] <= 0)).any()


def test_a_closing_lid_covers_the_eyeball_down_to_the_margin_and_no_further(anne_face):
    """Down to the target's upper-lid contour, plus the lash row hung under it (``lids.lash_hang``) once the eye is
    well shut."""
    img, mesh = anne_face
    # at 448 px (anne's eyes are 25 px wide at 224: a 0.3 closure drops the lid by under 2 px)
    img = cv2.resize(img, (448, 448), interpolation=cv2.INTER_CUBIC)
    mesh = mesh * np.array([2.0, 2.0, 2.0])
    skin = WarpRenderer(img, mesh, lids="skin")
    for amount in (0.3, 0.5, 0.7):
        target = close_eyes(mesh, amount)
        _, aux = skin.render(target, return_aux=True)
        for e in range(2):
            u, t, top, w = _eye_frame_coords(target, e, img.shape[:2])
            mid = (u > 0.25) & (u < 0.75)
            src_top = np.interp(np.clip(u, 0, 1), *lids._upper_curve(mesh, e, lids._eye_frame(mesh, e)))
            above = mid & (t < top - 2.0 / w) & (t > src_top)      # between the portrait's lid and the new margin
            low = np.interp(np.clip(u, 0, 1), *lids._curve(target, EYE_LOWER[e], lids._eye_frame(target, e)))
            hang = lids.lash_hang(S.eye_aspect_ratio(target[None])[0, e] / S.eye_aspect_ratio(mesh[None])[0, e])
            assert (hang == 0.0) == (amount < 0.6), (amount, hang)   # a lid well down: its lash row hangs
            below = mid & (t > top + hang + 2.0 / w) & (t < low - 1.0 / w)   # the eyeball left under the margin
            # hung, the lash row may reach the lower lid (nothing left under it); not hung, the eyeball shows
            assert above.sum() > 10 and (below.sum() > 3 or hang > 0.0), (amount, e, above.sum(), below.sum())
            assert aux["lids"][above].min() == pytest.approx(1.0, abs=1e-3), (amount, e)
            assert aux["lids"][below].max(initial=0.0) < 0.05, (amount, e)   # the raster's resampling: a hair
            if hang > 0.0:   # the hung lash row itself is drawn
                hung = mid & (t > top + 1.0 / w) & (t < top + hang - 1.0 / w) & (t < low)
                assert hung.sum() > 3 and aux["lids"][hung].min() > 0.9, (amount, e, hung.sum())


def test_a_shut_lid_hides_the_iris_under_the_portraits_lid_skin(anne_face, skin):
    img, mesh = anne_face
    out = skin.render(close_eyes(mesh, 1.0)).astype(np.float64)
    src = img.astype(np.float64)
    for e in range(2):
        iris = mesh[list(IRIS[e]), :2]
        c, r = iris[0], float(np.linalg.norm(iris[1:] - iris[0], axis=1).mean())
        yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        opening = poly_mask(img.shape[:2], mesh[list(topology.EYE_POLYGONS[e]), :2]) > 0.99
        disc = (np.hypot(xx - c[0], yy - c[1]) < 0.8 * r) & opening
        # the lid skin: the portrait's band from its crease down to its lash row (shut, the lashes hang under the
        # margin, so the skin over the eye is the skin above them)
        u, t, top, w = _eye_frame_coords(mesh, e, img.shape[:2])
        band = (u > 0.3) & (u < 0.7) & (t < top - lids.SLIDE_LASH) & (t > top - lids.SLIDE_CREASE)
        iris_col, skin_col = src[disc].mean(0), src[band].mean(0)
        now = out[disc].mean(0)
        assert np.linalg.norm(now - skin_col) < 0.35 * np.linalg.norm(iris_col - skin_col), (e, now, skin_col, iris_col)
        assert out[disc].mean() > src[disc].mean() + 40   # anne's dark iris is gone


@pytest.mark.parametrize("lids, covered, least", [("skin", 0.9, 40), ("painted", 0.5, 20)])
def test_the_lid_carries_the_skins_shading(anne_face, lids, covered, least):
    """A texture (the portrait with an expression's shading) reaches the closing lid as it reaches the skin around
    it: the portrait itself as texture changes nothing, and a uniformly darker one darkens the closed lid as much as
    the skin (no seam at the lid's box). The sliding lid (the default) and the painted lids alike."""
    img, mesh = anne_face
    renderer = WarpRenderer(img, mesh, lids=lids)
    target = close_eyes(mesh, 1.0)
    plain, aux = renderer.render(target, return_aux=True)
    assert np.array_equal(renderer.render(target, texture=img.copy()), plain)
    dark = renderer.render(target, texture=(img.astype(np.float32) * 0.8).astype(np.uint8)).astype(np.float32)
    lid = aux["lids"] > covered
    assert lid.sum() > least
    gain = dark[lid].mean() / plain[lid].astype(np.float32).mean()
    assert 0.77 < gain < 0.83


def test_lid_drop_moves_the_lash_row_with_the_margin(anne_face):
    """The portrait's lash row (dark, just above its lid) is found again just above the target's margin, under the
    lid's skin."""
    img, mesh = anne_face
    target = close_eyes(mesh, 0.5)
    e = 0
    x0, y0, x1, y1 = 0, 0, img.shape[1], img.shape[0]
    pix, weight = lids.sliding_lid(img, mesh, target, e, (x0, y0, x1, y1))
    u, t, top, w = _eye_frame_coords(target, e, img.shape[:2])
    lum = pix.mean(2)
    cols = (u > 0.35) & (u < 0.65)
    lash = cols & (t > top - lids.SLIDE_LASH) & (t < top) & (weight > 0.9)
    upper = cols & (t > top - 2.2 * lids.SLIDE_LASH) & (t < top - 1.2 * lids.SLIDE_LASH) & (weight > 0.9)
    assert lash.sum() > 5 and upper.sum() > 5
    assert lum[lash].mean() < lum[upper].mean() - 30


def test_a_shut_lids_lashes_hang_below_its_margin(anne_face):
    """Shut, the portrait's lash row hangs under the target's lid contour (mediapipe reads a dark row above the
    margin as the opening): lid skin just above the contour, the dark lashes just below it, all drawn."""
    img, mesh = anne_face
    img = cv2.resize(img, (448, 448), interpolation=cv2.INTER_CUBIC)
    mesh = mesh * 2.0
    target = close_eyes(mesh, 1.0)
    for e in range(2):
        pix, weight = lids.sliding_lid(img, mesh, target, e, (0, 0, 448, 448))
        u, t, top, w = _eye_frame_coords(target, e, img.shape[:2])
        cols = (u > 0.35) & (u < 0.65)
        hang = lids.lash_hang(0.0)
        assert hang == lids.SLIDE_HANG > 0.05
        lashes = cols & (t > top + 0.3 * hang) & (t < top + 0.8 * hang)
        skin = cols & (t > top - 0.12) & (t < top - 0.04)
        assert weight[lashes].min() > 0.9 and weight[skin].min() > 0.9, e
        lum = pix.mean(2)
        assert lum[lashes].mean() < lum[skin].mean() - 30, (e, lum[lashes].mean(), lum[skin].mean())


def test_a_squints_lower_lid_covers_its_waterline_and_a_blinks_does_not(anne_face):
    """Where the target's lower lid rose (a squint), the band just under its contour is drawn from further down the
    portrait's lower lid (its bright waterline read as the opening); a blink whose lower lid stays put gets nothing
    under its lower contour."""
    img, mesh = anne_face
    img = cv2.resize(img, (448, 448), interpolation=cv2.INTER_CUBIC)
    mesh = mesh * 2.0
    squint = close_eyes(mesh, 0.6)            # the lower lid comes up a fifth of the way as well
    blink = mesh.copy()                       # only the upper lid comes down, as far
    for e in range(2):
        up = list(EYE_UPPER[e][1:-1])
        blink[up] = squint[up]
    for target, covered in ((squint, True), (blink, False)):
        for e in range(2):
            pix, weight = lids.sliding_lid(img, mesh, target, e, (0, 0, 448, 448))
            u, t, top, w = _eye_frame_coords(target, e, img.shape[:2])
            low = np.interp(np.clip(u, 0, 1), *lids._curve(target, EYE_LOWER[e], lids._eye_frame(target, e)))
            band = (u > 0.35) & (u < 0.65) & (t > low + 1.0 / w) & (t < low + 0.07)
            assert band.sum() > 5
            if covered:
                assert weight[band].mean() > 0.5, (e, weight[band].mean())
            else:
                assert weight[band].max() == 0.0, (e, weight[band].max())


def test_sliding_lid_shares_its_cache_across_threads(anne_face):
    """Frames may render on two threads: one eye's cache shared by both, each with its own texture (an expression's
    shading) and closure, gives every frame exactly what a fresh cache gives it."""
    from concurrent.futures import ThreadPoolExecutor

    img, mesh = anne_face
    box = (40, 40, 184, 140)
    jobs = [(close_eyes(mesh, a), (img.astype(np.float32) * g).astype(np.uint8))
            for a in (0.4, 0.7, 1.0) for g in (1.0, 0.8, 0.9)] * 3
    alone = [lids.sliding_lid(tex, mesh, target, 0, box, None, {}) for target, tex in jobs]
    shared: dict = {}
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda job: lids.sliding_lid(job[1], mesh, job[0], 0, box, None, shared), jobs))
    for (p0, w0), (p1, w1) in zip(alone, both):
        assert np.array_equal(w0, w1) and np.array_equal(p0, p1)


def test_slide_lid_is_the_sliding_lid_where_it_draws(anne_face):
    """``slide_lid`` (what the renderer composites): None where the lid did not come down (a turned head's open eye),
    else ``sliding_lid``'s pixels and weight over the part of the box where the weight is above 0, none outside."""
    img, mesh = anne_face
    box = (40, 40, 184, 140)
    turned = rotate_mesh(mesh, yaw=15, pitch=-5)
    assert lids.slide_lid(img, mesh, turned, 0, box, turned, {}) is None
    for target in (close_eyes(mesh, 0.5), close_eyes(mesh, 1.0), close_eyes(rotate_mesh(mesh, yaw=-12), 0.7)):
        for e in range(2):
            full, weight = lids.sliding_lid(img, mesh, target, e, box, None, {})
            pix, a, (bx0, by0, bx1, by1) = lids.slide_lid(img, mesh, target, e, box, None, {})
            assert a.min() >= 0.0 and a[0].max() > 0 and a[-1].max() > 0 and a[:, 0].max() > 0 and a[:, -1].max() > 0
            assert np.array_equal(weight[by0:by1, bx0:bx1], a) and np.array_equal(full[by0:by1, bx0:bx1], pix)
            outside = np.ones(weight.shape, bool)
            outside[by0:by1, bx0:bx1] = False
            assert weight[outside].max() == 0.0


def test_read_back_opening_closes_with_the_request(still_detector, anne_face, skin):
    """One short mediapipe check: the EAR read back from the render falls with every step of the request."""
    img, mesh = anne_face
    ears = [S.eye_aspect_ratio(still_detector.detect(skin.render(close_eyes(mesh, a)))[0][None])[0]
            for a in (0.0, 0.3, 0.6, 1.0)]
    ears = np.array(ears)
    assert (np.diff(ears, axis=0) < 0).all(), ears
    assert (ears[-1] < 0.45 * ears[0]).all(), ears


def _lid_profile(img, mesh, target, e, **settings):
    """The sliding lid's mean luminance by eye-width row above eye `e`'s target margin (middle columns), under
    ``lids`` settings; rows from 0.30 eye widths above the margin down to it, in steps of 0.02."""
    saved = {k: getattr(lids, k) for k in settings}
    try:
        for k, v in settings.items():
            setattr(lids, k, v)
        pix, weight = lids.sliding_lid(img, mesh, target, e, (0, 0, img.shape[1], img.shape[0]))
    finally:
        for k, v in saved.items():
            setattr(lids, k, v)
    u, t, top, w = _eye_frame_coords(target, e, img.shape[:2])
    lum, cols = pix.mean(2), (u > 0.3) & (u < 0.7) & (weight > 0.9)
    d = top - t   # eye widths above the margin
    edges = np.arange(0.30, -0.001, -0.02)
    return np.array([lum[cols & (d <= a) & (d > a - 0.02)].mean() for a in edges[:-1]]), edges[:-1] - 0.01


def test_a_half_shut_lid_is_lit_skin_over_a_dark_line_at_its_margin(anne_face):
    """Half shut (issue 19, lids_s33.md): the lash row squeezed toward the margin and darkened into a line there
    (``SLIDE_SQUEEZE``, ``SLIDE_SHADE`` / ``SLIDE_SHADE_POW``), the skin above it lit like the skin above the crease
    (``SLIDE_LIT``): against session 32's lid (no squeeze, LIT 0, SHADE 0.1 at the cube), the darkest row is nearer
    the margin and darker, the skin above it no darker (0.12-0.24 eye widths above the margin; anne's lid is light
    already), the old lash row's top (0.09) skin, and the dark band thinner (its top, where the luminance crosses
    halfway between the skin and the line, lower). Nearly open (0.85x the open lid and up)
    the squeeze does nothing."""
    img, mesh = anne_face
    img = cv2.resize(img, (448, 448), interpolation=cv2.INTER_CUBIC)
    mesh = mesh * 2.0
    target = close_eyes(mesh, 0.5)
    old = dict(SLIDE_SQUEEZE=1.0, SLIDE_LIT=0.0, SLIDE_SHADE=0.1, SLIDE_SHADE_POW=3.0)
    for e in range(2):
        now, d = _lid_profile(img, mesh, target, e)
        before, _ = _lid_profile(img, mesh, target, e, **old)
        skin = (d > 0.12) & (d < 0.24)
        assert now[skin].mean() > before[skin].mean() + 1, (e, now[skin].mean(), before[skin].mean())
        # the old lash row's top (0.08-0.10 above the margin) is lid skin now; the darkest row at the margin, darker
        row = np.argmin(np.abs(d - 0.09))
        assert now[row] > before[row] + 20, (e, now[row], before[row])
        assert d[np.argmin(now)] < 0.04 and now.min() < before.min() - 5, (e, d[np.argmin(now)], now.min())
        assert now.min() < now[skin].mean() - 60   # a dark line under lit skin

        def top(p):   # eye widths above the margin where the dark band starts
            half = 0.5 * (p[skin].mean() + p.min())
            return d[np.argmax(p < half)]
        assert top(now) < top(before), (e, top(now), top(before))
    # nearly open: the squeeze leaves the lash row whole
    nearly = close_eyes(mesh, 0.1)
    a = lids.sliding_lid(img, mesh, nearly, 0, (0, 0, 448, 448))
    saved = lids.SLIDE_SQUEEZE
    try:
        lids.SLIDE_SQUEEZE = 1.0
        b = lids.sliding_lid(img, mesh, nearly, 0, (0, 0, 448, 448))
    finally:
        lids.SLIDE_SQUEEZE = saved
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_a_widened_eye_is_drawn_as_one_and_an_open_eye_stays_exact(anne_face, monkeypatch):
    """``eyes.WIDE_*`` (wideeye_s34.md; opt-in: ``eyes.WIDE_REAL``): an eye opened wider than the portrait's gets
    an anti-aliased opening edge, the portrait's lash line along its raised upper contour and a white shaded darker
    under that contour; eyes at or below the portrait's opening are bit-identical with those parts on or off."""

    from pdfgc.families.meshwarp import eyes as E

    img, mesh = anne_face
    img = cv2.resize(img, (448, 448), interpolation=cv2.INTER_CUBIC)
    mesh = mesh * np.array([2.0, 2.0, 2.0])
    wide_t = close_eyes(mesh, -0.2)
    targets = (mesh, close_eyes(mesh, 0.3), close_eyes(mesh, -0.01), shift_irises(mesh, 0.1, 0.05), wide_t)
    monkeypatch.setattr(E, "WIDE_REAL", False)
    off = [WarpRenderer(img, mesh, lids="skin").render(t, return_aux=True) for t in targets]
    monkeypatch.setattr(E, "WIDE_REAL", True)
    on = [WarpRenderer(img, mesh, lids="skin").render(t, return_aux=True) for t in targets]
    for (a, _), (b, _) in zip(on[:-1], off[:-1]):
        assert (a == b).all()
    (out, aux), (flat, aux0) = on[-1], off[-1]
    lum = lambda x: x.astype(np.float64) @ (0.299, 0.587, 0.114)   # noqa: E731
    assert (out != flat).any() and not ((out != flat).any(2) & (aux["eyes"] <= 0)).any()
    for e in range(2):
        u, t, top, w = _eye_frame_coords(wide_t, e, img.shape[:2])
        mid = (u > 0.3) & (u < 0.7)
        margin = mid & (np.abs(t - top) < 0.5 / w)   # on the raised upper contour: the lash line, dark
        assert margin.sum() > 5
        assert lum(out)[margin].mean() < lum(flat)[margin].mean() - 20.0, e
        # the white just under the contour is shaded (darker than it was; the moved iris as it was)
        under = mid & (t > top + 3.0 / w) & (t < top + 0.1) & (aux["eyes"] > 0.99)
        d = lum(flat)[under] - lum(out)[under]
        assert under.sum() > 5 and d.mean() > 3.0 and d.min() >= -1.0, (e, d.mean())   # -1: rounding
        # the opening's edge is anti-aliased: more partly covered pixels along it than the hard upper half had
        band = mid & (np.abs(t - top) < 3.0 / w)
        part = lambda m: ((m[band] > 0.02) & (m[band] < 0.98)).sum()   # noqa: E731
        assert part(aux["eyes"]) > 1.5 * part(aux0["eyes"]), (e, part(aux["eyes"]), part(aux0["eyes"]))
