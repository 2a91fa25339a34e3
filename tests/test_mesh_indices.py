"""The face-mesh index sets (pdfgc/media/mesh_indices.py): the values every user had before they moved there, the
names the alignment, the evaluation and the default family take them under, and their shape as contours."""
import numpy as np

from pdfgc.evaluation import signals as S
from pdfgc.families.meshwarp import codes as C
from pdfgc.families.meshwarp import mouth_bank, topology
from pdfgc.media import geometry
from pdfgc.media import mesh_indices as MI

# the literals as they were written in signals.py, topology.py, codes.py, geometry.py and mouth_bank.py
WAS = {
    "EAR_POINTS": [[33, 160, 158, 133, 153, 144], [263, 387, 385, 362, 380, 373]],
    "GAZE_POINTS": [[33, 133, 468], [362, 263, 473]],
    "EYE_CORNERS": [[33, 133], [362, 263]],
    "LIP_MIDPOINTS": (13, 14),
    "LIPS_OUTER": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185),
    "LIPS_INNER": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191),
    "FACE_HEIGHT": (10, 152),
    "RIGID_MIDLINE": (10, 151, 9, 8, 168, 6, 197, 195, 5),
    "EYE_UPPER": ((33, 246, 161, 160, 159, 158, 157, 173, 133), (263, 466, 388, 387, 386, 385, 384, 398, 362)),
    "EYE_LOWER": ((33, 7, 163, 144, 145, 153, 154, 155, 133), (263, 249, 390, 373, 374, 380, 381, 382, 362)),
    "IRIS": ((468, 469, 470, 471, 472), (473, 474, 475, 476, 477)),
    "LIP_UPPER": (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "LIP_LOWER": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308),
    "LIP_OUTER_UPPER": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291),
    "LIP_OUTER_LOWER": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291),
    "UPPER_FOLD": ((247, 30, 29, 27, 28, 56, 190), (467, 260, 259, 257, 258, 286, 414)),
    "CHEEKS": (50, 101, 118, 117, 123, 280, 330, 347, 346, 352),
    "LIP_CORNERS": (78, 308),
}


def test_every_set_keeps_the_values_it_had():
    for name, value in WAS.items():
        assert np.array_equal(np.asarray(getattr(MI, name)), np.asarray(value)), name
    assert MI.NUM_POINTS == 478 and MI.NUM_MESH == 468
    assert MI.RIGID_POINTS.tolist() == list(WAS["RIGID_MIDLINE"]) + [i for p in MI.RIGID_PAIRS for i in p]
    assert len(MI.RIGID_PAIRS) == 19 and MI.RIGID_PAIRS[14] == (234, 454)


def test_the_users_take_the_same_sets_under_their_own_names():
    # the evaluation (signals' names)
    assert S.EAR_POINTS is MI.EAR_POINTS and S.RIGID_POINTS is MI.RIGID_POINTS and S.EYE_CORNERS is MI.EYE_CORNERS
    assert S.IRIS_POINTS is MI.GAZE_POINTS and S.LIP_INNER == (13, 14) and S.FACE_HEIGHT == (10, 152)
    assert S.NUM_POINTS == 478
    # the alignment's three points
    assert geometry.LEFT_EYE_IDX == (33, 133) and geometry.RIGHT_EYE_IDX == (362, 263)
    assert geometry.MOUTH_IDX == (13, 14, 78, 308)
    assert all(type(i) is int for i in geometry.LEFT_EYE_IDX + geometry.RIGHT_EYE_IDX + geometry.MOUTH_IDX)
    # the default family: the renderer's contours, the codes' lid lines (corners left out), irises and corners
    assert topology.EYE_UPPER is MI.EYE_UPPER and topology.LIP_OUTER_LOWER is MI.LIP_OUTER_LOWER
    assert C.UPPER_LID.tolist() == [[246, 161, 160, 159, 158, 157, 173], [466, 388, 387, 386, 385, 384, 398]]
    assert C.LOWER_LID.tolist() == [[7, 163, 144, 145, 153, 154, 155], [249, 390, 373, 374, 380, 381, 382]]
    assert C.UPPER_FOLD.tolist() == [list(f) for f in WAS["UPPER_FOLD"]]
    assert C.IRIS.tolist() == [list(range(468, 473)), list(range(473, 478))] and C.IRIS.dtype == np.int64
    assert C.EYE_CORNER_POINTS == (33, 133, 263, 362) and C.NUM_POINTS == 478
    assert mouth_bank.CHEEK_POINTS == WAS["CHEEKS"]


def test_contours_run_corner_to_corner_and_loops_close_them():
    for e in range(2):
        up, lo = MI.EYE_UPPER[e], MI.EYE_LOWER[e]
        assert (up[0], up[-1]) == (lo[0], lo[-1]) and {up[0], up[-1]} == set(MI.EYE_CORNERS[e].tolist())
        assert {up[0], up[-1]} == {int(MI.EAR_POINTS[e, 0]), int(MI.EAR_POINTS[e, 3])}
        assert set(MI.EAR_POINTS[e, [1, 2]].tolist()) <= set(up) and set(MI.EAR_POINTS[e, [4, 5]].tolist()) <= set(lo)
        assert MI.GAZE_POINTS[e, 2] == MI.IRIS[e][0] and len(MI.UPPER_FOLD[e]) == len(up) - 2
    for upper, lower, loop in ((MI.LIP_UPPER, MI.LIP_LOWER, MI.LIPS_INNER),
                               (MI.LIP_OUTER_UPPER, MI.LIP_OUTER_LOWER, MI.LIPS_OUTER)):
        assert (upper[0], upper[-1]) == (lower[0], lower[-1])
        assert sorted(loop) == sorted(set(upper) | set(lower)) and len(loop) == len(set(loop))
    assert MI.LIP_CORNERS == (MI.LIP_UPPER[0], MI.LIP_UPPER[-1])
    assert MI.LIP_MIDPOINTS[0] in MI.LIP_UPPER and MI.LIP_MIDPOINTS[1] in MI.LIP_LOWER
    surface = np.concatenate([np.ravel(np.asarray(s)) for s in (
        MI.EYE_UPPER[0], MI.EYE_UPPER[1], MI.EYE_LOWER[0], MI.EYE_LOWER[1], MI.UPPER_FOLD, MI.LIPS_INNER,
        MI.LIPS_OUTER, MI.CHEEKS, MI.RIGID_POINTS, MI.FACE_HEIGHT)])
    assert 0 <= surface.min() and surface.max() < MI.NUM_MESH   # none of them is an iris point
    assert min(min(i) for i in MI.IRIS) == MI.NUM_MESH and max(max(i) for i in MI.IRIS) == MI.NUM_POINTS - 1
