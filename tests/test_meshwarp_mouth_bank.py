"""The mesh-warp mouth bank (pdfgc/families/meshwarp/mouth_bank.py): what it ships, and retrieval by lip shape that
never swaps the interior on a tiny change of the lips."""
import csv

import numpy as np
import pytest

from pdfgc.families.meshwarp import mouth_bank as MB
from pdfgc.families.meshwarp.warp import open_mouth

from .conftest import DATA


@pytest.fixture(scope="module")
def anne(anne_face):
    return anne_face


def test_bank_ships_only_allowed_licences_and_no_heldout_person():
    bank = MB.default_bank()
    assert bank is not None and MB.BANK_FILE.stat().st_size < 1_000_000
    n = len(bank.patches)
    assert bank.patches.shape == (n, MB.PATCH_H, MB.PATCH_W, 3) and bank.desc.shape == (n, 6)
    assert len(bank.sources) == len(bank.skin) == len(bank.lip) >= 2
    assert set(bank.person.tolist()) == set(range(len(bank.sources)))
    held = {ln.strip() for ln in (MB.Path(MB.__file__).parent / "heldout_identities.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")}
    # every entry is listed (clip, frame, licence, origin) and its licence is one that allows shipping
    frames = [f for s in bank.sources for f in s["frames"]]
    assert len(frames) == n
    assert all(s["person"] not in held for s in bank.sources)
    assert {f["licence"] for f in frames} <= set(MB.SHIPPABLE_LICENCES)
    # ... as the corpus manifest says for that clip's source, under that identity
    manifest = DATA / "corpus" / "manifest.csv"
    if manifest.is_file():
        rows = {r["repo"] + ":" + r["repo_path"]: r for r in csv.DictReader(open(manifest, newline=""))}
        for s in bank.sources:
            for f in s["frames"]:
                r = rows[f["origin"]]
                assert r["licence"] == f["licence"] in MB.SHIPPABLE_LICENCES and r["identity_guess"] == s["person"]


def _mouths(desc):
    desc = np.asarray(desc, np.float64)
    pats = np.stack([np.full((MB.PATCH_H, MB.PATCH_W, 3), 40.0 * (i + 1), np.float32) for i in range(len(desc))])
    return MB.PortraitMouths(pats, desc, np.zeros(len(desc), int))


def _desc(gap, mid=0.0):
    return np.array([mid - gap / 2] * 3 + [mid + gap / 2] * 3)


def test_retrieval_weights_are_continuous_in_the_shape():
    m = _mouths([_desc(0.05), _desc(0.15), _desc(0.30), _desc(0.45)])
    idx, w = m.weights(_desc(0.15))
    assert idx[0] == 1 and w[0] > 0.99                         # an entry's own shape gives (nearly) that entry alone
    # a shape moving across the whole range in tiny steps: the blended interior never jumps, and an entry that
    # enters the blend does so at (nearly) zero weight
    prev, prev_idx = None, None
    for gap in np.linspace(0.0, 0.6, 601):
        idx, w = m.weights(_desc(gap))
        p = m.patch(_desc(gap))
        if prev is not None:
            assert np.abs(p - prev).max() < 4.0, gap             # one hard swap of neighbours would be 40 levels
            for i, wi in zip(idx, w):
                if i not in prev_idx:
                    assert wi < 0.02, (gap, i, wi)
        prev, prev_idx = p, set(idx.tolist())
    # halfway between two entries (in the square-root metric) they are blended half and half
    half = ((np.sqrt(0.15) + np.sqrt(0.30)) / 2) ** 2
    idx, w = m.weights(_desc(half))
    assert set(idx.tolist()) == {1, 2} and abs(w[0] - w[1]) < 0.01
    # no state: the same shape gives the same interior whatever came before
    assert np.array_equal(m.patch(_desc(0.2)), _mouths(m.desc).patch(_desc(0.2)))


def test_portrait_retrieval_is_coherent_over_an_opening_mouth(anne):
    img, mesh = anne
    mouths = MB.default_bank().for_portrait(img, mesh)
    steps = [open_mouth(mesh, a) for a in np.linspace(0.02, 0.12, 101)]   # 0.001 face heights a step
    pats = [mouths.patch(MB.shape_descriptor(t)) for t in steps]
    jumps = [float(np.abs(b - a).mean()) for a, b in zip(pats, pats[1:])]
    total = float(np.abs(pats[-1] - pats[0]).mean())
    assert total > 10.0                                          # the interior does change with the opening
    assert max(jumps) < 0.25 * total, (max(jumps), total)        # but never all at once on a tiny step
    # a colour cost per portrait: every entry of a person pays the same
    for p in set(mouths.person.tolist()):
        assert np.ptp(mouths.bias[mouths.person == p]) == 0.0


def _teeth_patch(edge_row: int, lower_row: int | None = None) -> np.ndarray:
    """A synthetic interior: lips (150) beyond the inner-lip rows, white upper teeth (235) from the upper lip down
    to `edge_row`, a dark cavity (30) below, lower teeth from `lower_row` to the lower lip."""
    v = np.linspace(-MB.V_MARGIN, 1 + MB.V_MARGIN, MB.PATCH_H)
    p = np.full((MB.PATCH_H, MB.PATCH_W, 3), 30.0, np.float32)
    p[v < 0] = p[v > 1] = (170.0, 110.0, 110.0)
    rows = np.arange(MB.PATCH_H)
    p[(v >= 0) & (rows < edge_row)] = 235.0
    if lower_row is not None:
        p[(v <= 1) & (rows >= lower_row)] = 225.0
    return p


def test_teeth_edges_are_found_where_the_rows_change():
    e = MB.teeth_edges(_teeth_patch(18, 32), skin=200.0)
    assert abs(e[0] - 17.5) <= 1.0 and abs(e[1] - 31.5) <= 1.0, e
    assert np.isnan(MB.teeth_edges(np.full((MB.PATCH_H, MB.PATCH_W, 3), 40.0, np.float32), skin=200.0)).all()


def test_a_blend_of_two_entries_has_one_teeth_edge_not_a_doubled_row():
    # two interiors whose upper teeth end 8 rows apart, blended half and half: the cross-fade alone would leave a
    # grey band of "half teeth" between the two edges (a doubled row); aligned, one edge at their mean
    a, b = _teeth_patch(16, 34), _teeth_patch(24, 36)
    m = MB.PortraitMouths(np.stack([a, b]), np.stack([_desc(0.2), _desc(0.3)]), np.zeros(2, int),
                          edges=np.stack([MB.teeth_edge_bands(a, 200.0), MB.teeth_edge_bands(b, 200.0)]))
    half = ((np.sqrt(0.2) + np.sqrt(0.3)) / 2) ** 2
    idx, w = m.weights(_desc(half))
    assert abs(w[0] - 0.5) < 0.01
    level = m.patch(_desc(half))[:, MB.PATCH_W // 2, 0]
    v = np.linspace(-MB.V_MARGIN, 1 + MB.V_MARGIN, MB.PATCH_H)
    inside = level[(v >= 0.05) & (v <= 0.95)]
    ghost = (inside > 30 + 0.25 * 205) & (inside < 30 + 0.75 * 205)      # neither teeth nor cavity
    assert ghost.sum() <= 2, level.round()                               # only the edge's own rows
    naive = 0.5 * (a + b)[:, MB.PATCH_W // 2, 0]
    assert ((naive[(v >= 0.05) & (v <= 0.95)] > 81) & (naive[(v >= 0.05) & (v <= 0.95)] < 184)).sum() >= 6
    drop = int(np.argmax(-np.diff(level[v >= 0])))                      # the one teeth edge, at the mean edge
    assert abs(drop + np.flatnonzero(v >= 0)[0] + 0.5 - 20) <= 1.5
    # an entry alone is left as it is, and the lips beyond the inner-lip rows never move
    assert np.array_equal(m.patch(_desc(0.2)), a) or m.weights(_desc(0.2))[1][0] > 0.99
    assert np.allclose(m.patch(_desc(half))[v < -0.02], a[v < -0.02], atol=1.0)


def test_teeth_in_shadow_are_lifted_toward_the_skin_and_nothing_else_moves():
    p = _teeth_patch(20)                                                    # upper teeth only
    v = np.linspace(-MB.V_MARGIN, 1 + MB.V_MARGIN, MB.PATCH_H)
    teeth_rows = (v >= 0) & (np.arange(MB.PATCH_H) < 20)
    grey = p * np.where(teeth_rows, 150.0 / 235.0, 1.0)[:, None, None]      # teeth at 150 on a 200 skin
    out = MB.lift_teeth(grey.astype(np.float32), skin=200.0 / MB.TEETH_LIFT)
    assert out[teeth_rows].mean() > 150 * 1.25                              # brightened (at most x 1.3)
    assert out[teeth_rows].max() <= 150 * 1.3 + 0.5
    assert np.allclose(out[v < -0.1], grey[v < -0.1], atol=0.5)   # the lips beyond the opening (past the soft edge)
    assert np.allclose(out[(v > 0.55) & (v < 1.0)], 30.0, atol=0.5)        # the dark cavity
    level = MB.lift_teeth(p.astype(np.float32), skin=235.0 / MB.TEETH_LIFT)   # teeth already at the level: as they are
    assert np.allclose(level, p, atol=0.01)


def test_glaring_teeth_are_dimmed_to_the_skin_and_take_its_warmth():
    p = _teeth_patch(20).astype(np.float32)                                 # teeth at 235, cavity 30, lips beyond
    v = np.linspace(-MB.V_MARGIN, 1 + MB.V_MARGIN, MB.PATCH_H)
    teeth_rows = (v >= 0.05) & (np.arange(MB.PATCH_H) < 19)
    # on a darker face (skin grey 150) the bank's 235 teeth are dimmed toward 1.05 x 150 (at most to x TEETH_DIM)
    out = MB.lift_teeth(p, skin=150.0)
    want = max(MB.TEETH_LIFT * 150.0, MB.TEETH_DIM * 235.0)
    assert abs(np.percentile(out[teeth_rows].mean(-1), 90) - want) < 3.0
    assert np.allclose(out[v < -0.1], p[v < -0.1], atol=0.5)                # lips and cavity unchanged
    assert np.allclose(out[(v > 0.55) & (v < 1.0)], 30.0, atol=0.5)
    # given the portrait's skin RGB, the teeth take its chromaticity (to TEETH_WARMTH) at their own grey
    skin = np.array([200.0, 140.0, 110.0])                                  # warm skin, grey 150
    warm = MB.lift_teeth(p, skin=skin)
    t = warm[teeth_rows].reshape(-1, 3).mean(0)
    assert t[0] > t[1] > t[2]                                               # warm, red above blue
    assert abs(t.mean() - out[teeth_rows].mean()) < 1.0                     # same grey as without the warmth
    ch = (skin / skin.mean()) ** MB.TEETH_WARMTH
    assert np.allclose(t / t.mean(), ch / ch.mean(), atol=0.02)
    assert np.allclose(warm[(v > 0.55) & (v < 1.0)], 30.0, atol=0.5)
    grey_skin = MB.lift_teeth(p, skin=np.full(3, 150.0))                    # a grey skin: grey teeth
    assert np.allclose(grey_skin, out, atol=0.5)
