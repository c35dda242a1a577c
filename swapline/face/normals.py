"""Surface normals of the 468-point FaceMesh.

The triangulation (3-cliques of MediaPipe's edge list) has no winding order of its own, so the
triangles are oriented once, consistently across shared edges, with the face's front towards
the camera (FaceMesh's z grows away from the camera), read from each mesh's own outline. Normals are in the mesh's own frame:
x right, y down, z away from the camera; a surface seen head-on has the normal (0, 0, -1).
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy import sparse

from . import mesh_topology as topo
from .mesh_triangles import TRIANGLES


def orient_triangles(tris: np.ndarray) -> np.ndarray:
    """``tris`` ``(T, 3) int`` with their windings made consistent: two triangles that share an
    edge run along it in opposite directions (breadth-first over the edge graph; each connected
    piece keeps its first triangle's winding). Returns ``(T, 3) int32``."""
    tris = np.asarray(tris, np.int32).copy()
    by_edge: dict[tuple[int, int], list[int]] = {}
    for i, (a, b, c) in enumerate(tris):
        for u, v in ((a, b), (b, c), (c, a)):
            by_edge.setdefault((min(u, v), max(u, v)), []).append(i)
    done = np.zeros(len(tris), bool)
    for start in range(len(tris)):
        if done[start]:
            continue
        done[start] = True
        todo = deque([start])
        while todo:
            i = todo.popleft()
            a, b, c = (int(x) for x in tris[i])
            for u, v in ((a, b), (b, c), (c, a)):
                for j in by_edge[(min(u, v), max(u, v))]:
                    if done[j]:
                        continue
                    ja, jb, jc = (int(x) for x in tris[j])
                    # j must run v -> u along this edge; if it runs u -> v, flip it
                    if (u, v) in ((ja, jb), (jb, jc), (jc, ja)):
                        tris[j] = (ja, jc, jb)
                    done[j] = True
                    todo.append(j)
    return tris


FACE_TRIANGLES: np.ndarray = orient_triangles(np.concatenate([TRIANGLES, topo.EYE_FILL]))
FACE_TRIANGLES.setflags(write=False)


def triangle_normals(mesh: np.ndarray, tris: np.ndarray = FACE_TRIANGLES) -> np.ndarray:
    """Unnormalised normals ``(T, 3) float64`` (length = twice the area) of ``tris`` on
    ``mesh`` ``(468, 3)``, pointing out of the face's front (negative z where it faces the
    camera). The orientation is consistent across the mesh; its overall sign is read from the
    mesh itself: the z components add up to twice the outline's signed area on screen, which is
    negative for any face that shows its front."""
    m = np.asarray(mesh, np.float64)
    a, b, c = m[tris[:, 0]], m[tris[:, 1]], m[tris[:, 2]]
    n = np.cross(b - a, c - a)
    return -n if n[:, 2].sum() > 0 else n


def _incidence(tris: np.ndarray, n_points: int) -> sparse.csr_matrix:
    """``(n_points, T)`` sparse 0/1 matrix: which triangles each vertex belongs to."""
    rows = np.asarray(tris, np.int64).ravel()
    cols = np.repeat(np.arange(len(tris)), 3)
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_points, len(tris)))


_FACE_INCIDENCE = _incidence(FACE_TRIANGLES, topo.N_POINTS)


def vertex_normals(mesh: np.ndarray, tris: np.ndarray = FACE_TRIANGLES) -> np.ndarray:
    """Unit normals ``(468, 3) float32`` of ``mesh`` ``(468, 3)``: the area-weighted mean of the
    normals of the triangles around each vertex (x right, y down, z away from the camera)."""
    fn = triangle_normals(mesh, tris)
    incidence = _FACE_INCIDENCE if tris is FACE_TRIANGLES else _incidence(tris, len(mesh))
    acc = incidence @ fn
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    return (acc / np.maximum(norm, 1e-12)).astype(np.float32)
