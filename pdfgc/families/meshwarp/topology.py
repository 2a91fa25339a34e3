"""Triangles of mediapipe's face mesh and the polygons of its holes, as the warp renderer uses them (the index
sets themselves: ``pdfgc/media/mesh_indices.py``).

The triangles are rebuilt from mediapipe's tessellation edges (the installed wheel ships no canonical mesh file):
every 3-clique of the edge graph is a face except two "hollow" cliques (all three edges already bound two faces
each), which leaves 852 faces, as Euler's formula wants for 468 points and 1322 edges on a sphere with four holes
(face outline, two eyes, mouth). The eye and mouth holes are then closed with strips between their upper and lower
contours (14 + 14 + 18 triangles), 898 in all, and every triangle is wound so that its signed area is positive on an
upright frontal face (x right, y down): a negative area in a target mesh means the triangle faces away.
"""
from __future__ import annotations

import functools
import itertools
from collections import Counter, deque

import numpy as np

# the contours the renderer uses, under the names it has always used (lid contours and inner / outer lips, corner
# to corner, and the irises: pdfgc/media/mesh_indices.py)
from pdfgc.media.mesh_indices import (  # noqa: F401  (re-exported: topology.EYE_UPPER etc.)
    EYE_LOWER,
    EYE_UPPER,
    IRIS,
    LIP_LOWER,
    LIP_OUTER_LOWER,
    LIP_OUTER_UPPER,
    LIP_UPPER,
    NUM_MESH,
)

# A triangle whose winding is known to be front-facing (positive signed area, y down) on an upright frontal face:
# it fixes the global sign of the otherwise purely topological orientation (checked on anne.png's mesh).
_REFERENCE = (10, 338, 151)


def _closed(loop_upper, loop_lower):
    """Polygon (corner, upper..., corner, lower reversed...) without repeating the corners."""
    return tuple(loop_upper) + tuple(loop_lower[-2:0:-1])


EYE_POLYGONS = tuple(_closed(u, l) for u, l in zip(EYE_UPPER, EYE_LOWER))
MOUTH_POLYGON = _closed(LIP_UPPER, LIP_LOWER)


def _strip(upper, lower):
    """Triangles between two contours that share their first and last points."""
    tris = []
    n = len(upper)
    for i in range(n - 1):
        a, b, c, d = upper[i], upper[i + 1], lower[i], lower[i + 1]
        if i == 0:
            tris.append((a, b, d))  # a == c (shared corner)
        elif i == n - 2:
            tris.append((a, b, c))  # b == d
        else:
            tris.extend([(a, b, d), (a, d, c)])
    return tris


@functools.lru_cache(maxsize=1)
def _tessellation() -> tuple[tuple[int, int, int], ...]:
    from pdfgc.media.mesh import import_face_mesh
    FACEMESH_TESSELATION = import_face_mesh().FACEMESH_TESSELATION   # (mediapipe without pyplot)

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    adj: dict[int, set[int]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    cliques = {tuple(sorted((a, b, x))) for a, b in edges for x in adj[a] & adj[b]}
    count = Counter(e for t in cliques for e in itertools.combinations(t, 2))
    # a hollow clique: each of its edges is shared by three cliques (two real faces + itself)
    faces = [t for t in cliques if not all(count[e] == 3 for e in itertools.combinations(t, 2))]
    return tuple(sorted(faces))


def _orient(tris: list[tuple[int, int, int]]) -> np.ndarray:
    """Consistent winding by breadth-first propagation over shared edges, globally signed by _REFERENCE."""
    by_edge: dict[tuple[int, int], list[int]] = {}
    for k, t in enumerate(tris):
        for e in itertools.combinations(t, 2):
            by_edge.setdefault(tuple(sorted(e)), []).append(k)
    out = [None] * len(tris)
    ref = next(k for k, t in enumerate(tris) if set(t) == set(_REFERENCE))
    out[ref] = _REFERENCE
    queue = deque([ref])
    while queue:
        k = queue.popleft()
        a, b, c = out[k]
        for u, v in ((a, b), (b, c), (c, a)):
            for j in by_edge[tuple(sorted((u, v)))]:
                if out[j] is None:
                    w = next(x for x in tris[j] if x not in (u, v))
                    out[j] = (v, u, w)  # a neighbour traverses the shared edge the other way
                    queue.append(j)
    if any(t is None for t in out):
        raise RuntimeError("face-mesh tessellation is not connected")
    return np.array(out, dtype=np.int64)


@functools.lru_cache(maxsize=1)
def _all_triangles() -> tuple[np.ndarray, int]:
    base = list(_tessellation())
    fills = []
    for u, l in zip(EYE_UPPER, EYE_LOWER):
        fills += _strip(u, l)
    fills += _strip(LIP_UPPER, LIP_LOWER)
    tris = _orient(base + fills)
    tris.setflags(write=False)
    return tris, len(base)


def triangles() -> np.ndarray:
    """(898,3) int64 face-mesh triangles (852 from the tessellation, then 14 + 14 eye and 18 mouth fills),
    wound front-facing (positive signed area in x-right, y-down pixels) on an upright frontal face."""
    return _all_triangles()[0]


def fill_slices() -> dict[str, slice]:
    """Where the hole fills sit in ``triangles()``: 'eye0', 'eye1' (image-left eye first) and 'mouth'."""
    n = _all_triangles()[1]
    e = len(_strip(EYE_UPPER[0], EYE_LOWER[0]))
    return {"eye0": slice(n, n + e), "eye1": slice(n + e, n + 2 * e), "mouth": slice(n + 2 * e, len(triangles()))}


@functools.lru_cache(maxsize=1)
def face_oval() -> np.ndarray:
    """The face outline (36 points) as one closed loop, clockwise on screen (y down), starting at forehead 10."""
    from pdfgc.media.mesh import import_face_mesh
    FACEMESH_FACE_OVAL = import_face_mesh().FACEMESH_FACE_OVAL

    nxt: dict[int, list[int]] = {}
    for a, b in FACEMESH_FACE_OVAL:
        nxt.setdefault(a, []).append(b)
        nxt.setdefault(b, []).append(a)
    loop = [10]
    prev = None
    while True:
        cand = [x for x in nxt[loop[-1]] if x != prev]
        prev = loop[-1]
        nb = cand[0] if len(loop) > 1 else min(cand, key=lambda x: 0 if x == 338 else 1)
        if nb == loop[0]:
            break
        loop.append(nb)
    out = np.array(loop, dtype=np.int64)
    out.setflags(write=False)
    return out


def signed_areas(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Signed areas (x right, y down: > 0 = front-facing for ``triangles()``)."""
    a, b, c = points[tris[:, 0], :2], points[tris[:, 1], :2], points[tris[:, 2], :2]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
