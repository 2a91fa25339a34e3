"""Index sets of mediapipe's face mesh, one home for the alignment, the families and the evaluation.

The mesh has 478 points with ``refine_landmarks`` (468 tessellated surface points, then 5 iris points per eye).
Eye 0 is the image-left eye of an upright face (the subject's right eye: 33 its outer corner, 133 its inner one);
every per-eye set below uses that order, and keeps anatomical labels rather than sorting by x, so a strongly
rolled face stays right. Contours run corner to corner; closed loops are built from them, so a loop and its
contours cannot disagree. ``tests/test_mesh_indices.py`` pins every value.
"""
from __future__ import annotations

import numpy as np

NUM_POINTS = 478   # with refine_landmarks: the surface, then the irises
NUM_MESH = 468     # tessellated surface points (the 10 iris points are not part of the surface)

# ---------------------------------------------------------------------------------------------- eyes

# lid contours per eye, outer corner -> inner corner, corners included
EYE_UPPER = ((33, 246, 161, 160, 159, 158, 157, 173, 133), (263, 466, 388, 387, 386, 385, 384, 398, 362))
EYE_LOWER = ((33, 7, 163, 144, 145, 153, 154, 155, 133), (263, 249, 390, 373, 374, 380, 381, 382, 362))
# the skin fold above each upper-lid point between the corners (EYE_UPPER[e][1:-1]), same order
UPPER_FOLD = ((247, 30, 29, 27, 28, 56, 190), (467, 260, 259, 257, 258, 286, 414))
IRIS = ((468, 469, 470, 471, 472), (473, 474, 475, 476, 477))  # per eye: iris centre first, then four rim points
# per eye: (image-left corner, image-right corner) of an upright face
EYE_CORNERS = np.array([[33, 133], [362, 263]], dtype=np.int64)
# eye aspect ratio points p1..p6 per eye: p1/p4 the corners, p2-p6 and p3-p5 upper/lower lid pairs
EAR_POINTS = np.array([[33, 160, 158, 133, 153, 144], [263, 387, 385, 362, 380, 373]], dtype=np.int64)
# per eye: (image-left corner, image-right corner, iris centre), the gaze signal's frame
GAZE_POINTS = np.array([[33, 133, 468], [362, 263, 473]], dtype=np.int64)

# ---------------------------------------------------------------------------------------------- lips

# inner lip contours, corner 78 (image-left) -> corner 308
LIP_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIP_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# outer lip contours, corner 61 -> corner 291
LIP_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIP_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIP_CORNERS = (LIP_UPPER[0], LIP_UPPER[-1])  # inner-lip corners (78, 308): the mouth's width
LIP_MIDPOINTS = (13, 14)  # upper, lower inner-lip midpoints: the mouth's opening
# closed loops around the mouth, lower contour corner to corner, then the upper one back
LIPS_OUTER = LIP_OUTER_LOWER + LIP_OUTER_UPPER[-2:0:-1]
LIPS_INNER = LIP_LOWER + LIP_UPPER[-2:0:-1]

# ---------------------------------------------------------------------------------------------- face

FACE_HEIGHT = (10, 152)  # forehead top, chin
FACE_SIDES = (234, 454)  # the face outline at the ears, image-left then image-right: the face's width
NOSE_TIP = 1
# the middle of each cheek, image-left then image-right (the midpoint of each pair: below the eye, beside the nose)
CHEEK_CENTRES = ((50, 205), (280, 425))
# cheek skin below the eyes, five points a side (colour samples for the mouth interior)
CHEEKS = (50, 101, 118, 117, 123, 280, 330, 347, 346, 352)
# Rigid points for the head-pose fit, as (midline points) + (subject-right, subject-left) mirror pairs. Chosen as the
# points with the smallest residual after a rigid fit over the shipped VoxCeleb2 clips (talking, blinking, expressions,
# head turns), restricted to forehead, nose bridge, temples and cheekbones; the pairs are mediapipe's mirror partners
# (checked by matching anne.png's mesh with its reflection).
RIGID_MIDLINE = (10, 151, 9, 8, 168, 6, 197, 195, 5)
RIGID_PAIRS = (
    (109, 338), (67, 297), (103, 332), (54, 284), (21, 251), (108, 337), (69, 299), (104, 333), (68, 298),
    (71, 301), (127, 356), (162, 389), (139, 368), (34, 264), (234, 454), (116, 345), (143, 372), (193, 417),
    (122, 351),
)
RIGID_POINTS = np.array(list(RIGID_MIDLINE) + [i for pair in RIGID_PAIRS for i in pair], dtype=np.int64)

