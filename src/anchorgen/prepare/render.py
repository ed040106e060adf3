"""Structure-condition renders: a shaded 3D surface of the person on black.

Make-Your-Anchor+ conditions its generator on renders of an SMPL-X body mesh (a smooth,
Lambert-shaded grey surface on a black background). This module draws the same kind of
image from MediaPipe landmarks (:class:`anchorgen.landmarks.LandmarkSequence`), so a clip
and any retargeted motion can be re-rendered from the saved landmarks alone:

- face: the 468-point face mesh triangulated (:func:`face_triangles`), smooth shaded with
  area-weighted vertex normals; the open mouth shows as a dark cavity; a skull sphere
  behind it (a head sphere at the ears when only the pose is known);
- torso: a half elliptic cylinder from the shoulders to the hips with rounded ends;
- neck, arms, legs (only where MediaPipe sees them), fingers: tapered 3D capsules, radii
  proportional to the shoulder width (body) or the palm length (hands); wrist-to-knuckle
  cones fill the palm.

Everything is rasterised by a vectorised z-buffer in torch on the CPU: orthographic view
along +z, coordinates in output pixels (x right, y down, z away from the camera, pixel
(i, j) has its centre at x = j + 0.5, y = i + 0.5). The nearest surface wins; shading is
``albedo * (AMBIENT + (1 - AMBIENT) * max(0, n . l))`` times :data:`SURFACE_COLOR`.
Output is deterministic (same input, same bytes).

:func:`render_mesh_frame` draws any triangle mesh (e.g. SMPL-X vertices and faces from the
``smplx`` package, already projected to pixels) the same way.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from anchorgen.errors import InputError
from anchorgen.landmarks import POINTS_PER_PART, LandmarkSequence

SURFACE_COLOR = (0.78, 0.96, 1.0)
"""RGB albedo of the surface, the pale blue-grey measured on the SMPL-X condition renders
of the published Make-Your-Anchor inference inputs, so that pre-rendered SMPL-X frames and
landmark renders look alike to the same model."""
AMBIENT = 0.3
"""Share of the brightness that does not depend on the surface normal."""
LIGHT_DIRECTION = (-0.25, -0.45, -1.0)
"""Direction towards the light (before normalising): from the camera, above, left."""
MOUTH_ALBEDO = 0.2
"""Albedo of the triangles that close the mouth opening (inner lips): a dark cavity."""

_CHUNK_FRAGMENTS = 1 << 20
"""Candidate pixels rasterised at once (bounds memory for large or many primitives)."""
_OCCLUSION_MARGIN = (0.5, 1e-3)
"""(pixels, fraction of |depth|): how far behind a nearer surface a capsule's nearest
possible point must lie before its candidate pixels are skipped unshaded; far above the
float32 error of the depths, so the skipped pixels are ones the z-test would reject."""
_MIN_VISIBILITY = 0.5
"""Leg bones are drawn only when MediaPipe sees both their ends at least this well."""

# MediaPipe Pose landmark indices (BlazePose topology).
_LEFT_EAR, _RIGHT_EAR = 7, 8
_LEFT_SHOULDER, _RIGHT_SHOULDER = 11, 12
_LEFT_HIP, _RIGHT_HIP = 23, 24
_ARMS = {"left_hand": (11, 13, 15), "right_hand": (12, 14, 16)}
"""Shoulder, elbow, wrist of each side, keyed by the hand part they end in."""
_POSE_HAND_BONES = {
    "left_hand": ((15, 17), (15, 19), (15, 21), (17, 19)),
    "right_hand": ((16, 18), (16, 20), (16, 22), (18, 20)),
}
"""Wrist, pinky, index and thumb points: a mitten where the hand model found no hand."""
_LEG_BONES = (
    *((23, 25), (25, 27), (27, 29), (29, 31), (27, 31)),  # left hip to toes
    *((24, 26), (26, 28), (28, 30), (30, 32), (28, 32)),  # right
)
_POSE_RADIUS = np.array(
    [0.0] * 11  # head points: the head is a sphere or the face mesh
    + [0.12, 0.12, 0.085, 0.085, 0.06, 0.06]  # shoulders, elbows, wrists
    + [0.04] * 6  # pinky, index, thumb knuckles
    + [0.16, 0.16, 0.1, 0.1, 0.065, 0.065, 0.055, 0.055, 0.045, 0.045]  # hips .. toes
)
"""Limb radius at each pose point over the body scale (3D shoulder width); limbs taper."""
_NECK_RADIUS = 0.17
_TORSO_HALF_DEPTH = 0.28
"""Chest half-depth over shoulder width."""
_TORSO_DOME = 0.12
"""How far the rounded ends of the torso reach beyond the shoulder and the hip lines, over
the torso length."""
_HIP_WIDTH_FACTOR = 1.5
"""Hip joints lie inside the pelvis: torso half-width at the hips over half the joint distance."""
_HEAD_RADIUS_FROM_EARS = 0.62
"""Head sphere radius over the ear distance when only the pose is known."""

# Face mesh indices: cheek extremes of the face oval, forehead top, chin.
_FACE_RIGHT_CHEEK, _FACE_LEFT_CHEEK, _FACE_TOP, _FACE_CHIN = 234, 454, 10, 152
_FACE_MESH_POINTS = 468
"""The triangulated points; 468-477 are the iris points of the refined model."""
_HOLE_CORNERS = (33, 263, 78)
"""Right-eye, left-eye and mouth corners: each hole of the mesh is closed by a triangle
strip that zips its two lids (lips) together starting at this corner."""
_SKULL_RADIUS = 0.62
"""Skull sphere radius over the face width (cheek to cheek)."""

# MediaPipe Hands: 0 wrist, then 4 points per digit from the thumb (1-4) to the pinky (17-20).
_HAND_WRIST, _HAND_MIDDLE_MCP = 0, 9
_DIGIT_BONES = tuple(
    (0 if joint == 0 else base + joint - 1, base + joint)
    for base in (1, 5, 9, 13, 17)
    for joint in range(4)
)
_HAND_BONES = (*_DIGIT_BONES, (5, 9), (9, 13), (13, 17), (0, 17), (0, 9), (0, 13))
"""Digit chains, the knuckle line and the palm edge (MediaPipe's HAND_CONNECTIONS), plus
wrist-to-knuckle cones that fill the palm."""
_HAND_RADIUS = np.array(
    [0.28]  # wrist
    + [0.19, 0.16, 0.14, 0.12]  # thumb: carpometacarpal joint to tip
    + [0.15, 0.13, 0.115, 0.1] * 2  # index, middle
    + [0.14, 0.12, 0.11, 0.095]  # ring
    + [0.13, 0.11, 0.1, 0.085]  # pinky
)
"""Radius at each hand point over the hand scale (3D wrist to middle-finger knuckle)."""


# --------------------------------------------------------------------------- face mesh


def _face_edges() -> set[tuple[int, int]]:
    """MediaPipe's face-mesh edges as sorted pairs (imports mediapipe, about a second)."""
    import os

    os.environ.setdefault("GLOG_minloglevel", "2")
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return {(min(a, b), max(a, b)) for a, b in FACEMESH_TESSELATION}


def _edge_counts(triangles: list[tuple[int, ...]]) -> collections.Counter:
    return collections.Counter(
        (min(a, b), max(a, b)) for tri in triangles for a, b in itertools.combinations(tri, 2)
    )


def _boundary_loops(triangles: list[tuple[int, ...]]) -> list[list[int]]:
    """Closed loops of the edges used by exactly one triangle (each loop in walking order)."""
    neighbours: dict[int, list[int]] = collections.defaultdict(list)
    for (a, b), count in sorted(_edge_counts(triangles).items()):
        if count == 1:
            neighbours[a].append(b)
            neighbours[b].append(a)
    if any(len(n) != 2 for n in neighbours.values()):
        raise RuntimeError("face mesh boundary is not a set of simple loops")
    loops, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, previous, current = [start], None, start
        seen.add(start)
        while True:
            step = [n for n in neighbours[current] if n != previous and n not in seen]
            if not step:
                break
            previous, current = current, min(step)
            loop.append(current)
            seen.add(current)
        loops.append(loop)
    return loops


def _zip_hole(loop: list[int], corner: int) -> list[tuple[int, int, int]]:
    """Close a boundary loop by a strip from ``corner`` alternating between its two sides."""
    n, s = len(loop), loop.index(corner)
    at = lambda k: loop[(s + k) % n]  # noqa: E731
    triangles = [(at(0), at(1), at(n - 1))]
    forward, backward = 1, n - 1
    while backward - forward > 1:
        if len(triangles) % 2:
            triangles.append((at(forward), at(forward + 1), at(backward)))
            forward += 1
        else:
            triangles.append((at(forward), at(backward - 1), at(backward)))
            backward -= 1
    return triangles


def _orient_consistently(triangles: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Flip triangles so that neighbours run through their shared edge in opposite directions."""
    by_edge: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for index, tri in enumerate(triangles):
        for a, b in itertools.combinations(tri, 2):
            by_edge[(min(a, b), max(a, b))].append(index)

    def directed(tri: tuple[int, int, int]) -> set[tuple[int, int]]:
        return {(tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])}

    oriented: list[tuple[int, int, int] | None] = [None] * len(triangles)
    oriented[0] = triangles[0]
    queue = collections.deque([0])
    while queue:
        index = queue.popleft()
        edges = directed(oriented[index])  # type: ignore[arg-type]
        for a, b in edges:
            for other in by_edge[(min(a, b), max(a, b))]:
                if oriented[other] is None:
                    tri = triangles[other]
                    oriented[other] = tri if (a, b) not in directed(tri) else tri[::-1]
                    queue.append(other)
    if any(tri is None for tri in oriented):
        raise RuntimeError("face mesh is not connected")
    return oriented  # type: ignore[return-value]


FACE_MESH_TABLE = Path(__file__).with_name("face_mesh.npz")
"""The derived triangles, committed so rendering needs no MediaPipe (e.g. on a GPU server);
``tests/test_render.py`` checks the table against a fresh derivation."""


@functools.cache
def _face_mesh() -> tuple[np.ndarray, np.ndarray]:
    """(triangles (898, 3) int64, mouth mask (898,) bool), both read-only, from the table."""
    with np.load(FACE_MESH_TABLE, allow_pickle=False) as table:
        faces = table["triangles"].astype(np.int64)
        is_mouth = table["mouth"].astype(bool)
    faces.flags.writeable = False
    is_mouth.flags.writeable = False
    return faces, is_mouth


def write_face_mesh_table(path: Path = FACE_MESH_TABLE) -> None:
    """Regenerate the committed table from MediaPipe's ``FACEMESH_TESSELATION``."""
    faces, is_mouth = derive_face_mesh()
    np.savez_compressed(path, triangles=faces.astype(np.int16), mouth=is_mouth)


def derive_face_mesh() -> tuple[np.ndarray, np.ndarray]:
    """Triangles and mouth mask derived from MediaPipe's edge list (needs mediapipe)."""
    edges = _face_edges()
    neighbours: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    # Every triangle of the mesh is a 3-clique of its edge graph.
    cliques = sorted(
        {tuple(sorted((a, b, c))) for a, b in edges for c in neighbours[a] & neighbours[b]}
    )
    # A clique whose three edges all border more than two cliques is the outline of a fan
    # of real triangles around an inner vertex, not a face.
    counts = _edge_counts(cliques)
    skin = [t for t in cliques if not all(counts[e] > 2 for e in itertools.combinations(t, 2))]
    if max(_edge_counts(skin).values()) > 2:
        raise RuntimeError("face mesh derived from FACEMESH_TESSELATION is not a manifold")
    loops = _boundary_loops(skin)
    outline = max(loops, key=len)  # the face oval stays open
    eyes, mouth = [], []
    for loop in loops:
        if loop is outline:
            continue
        corner = next((c for c in _HOLE_CORNERS if c in loop), None)
        if corner is None:
            raise RuntimeError(f"unexpected hole in the face mesh at points {loop}")
        (mouth if corner == _HOLE_CORNERS[2] else eyes).extend(_zip_hole(loop, corner))
    triangles = _orient_consistently(skin + eyes + mouth)
    is_mouth = np.zeros(len(triangles), bool)
    is_mouth[len(skin) + len(eyes) :] = True
    return np.asarray(triangles, np.int64), is_mouth


def face_triangles() -> np.ndarray:
    """Triangles of MediaPipe's 468-point face mesh: (898, 3) int64, read-only.

    MediaPipe ships only the edge list ``FACEMESH_TESSELATION``; the triangles are its
    3-cliques less the spurious ones (fan outlines), which leaves a manifold disk with the
    eyes and the mouth open. Those three holes are closed by triangle strips, as in the
    canonical face model (898 triangles). Triangles are consistently oriented; the sign
    facing the camera is chosen per frame by the renderer. Rows from
    :func:`face_mouth_mask` close the mouth.
    """
    return _face_mesh()[0]


def face_mouth_mask() -> np.ndarray:
    """(898,) bool, read-only: which rows of :func:`face_triangles` fill the mouth opening."""
    return _face_mesh()[1]


# --------------------------------------------------------------------------- rasteriser


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread, in inference mode: the ops here are small, and on a busy
    2-core machine the thread hand-offs made a frame 5-30x slower; inference mode skips
    autograd bookkeeping on every op (about 8% of a frame). Results do not depend on it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous)


def _image_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` (int: square, or (height, width)) -> (height, width), validated."""
    height, width = (size, size) if isinstance(size, (int, np.integer)) else size
    if int(height) < 1 or int(width) < 1:
        raise InputError(f"render size must be positive, got {size}")
    return int(height), int(width)


_Fragments = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""The visible surface: (pixel (M,) int64 flat index y * W + x, depth (M,) float32, unit
normal (M, 3) float32, albedo (M,) float32), one fragment per covered pixel."""

_RANK_BITS = 32
_MESH_RANKS = 1 << 31
"""Z-buffer keys hold the depth in their high 32 bits and a rank in the low 32 bits: mesh
fragments rank below this, capsule fragments above it. On equal depth the lower rank wins,
so meshes win depth ties against capsules, and among meshes (capsules) the fragment
listed last wins."""
_EMPTY_KEY = (0x7F800000 << _RANK_BITS) | ((1 << _RANK_BITS) - 1)
"""Key of a pixel no surface covers: depth +inf, rank above every fragment's."""
_FINITE_KEYS = 0x7F800000 << _RANK_BITS
"""Keys below this have a finite depth (a miss, depth +inf, never covers a pixel)."""
_SPAN_MARGIN = 0.05
"""Pixels by which a capsule's exact silhouette span is widened: far above the float32
error of the hit test, so every pixel the ray hits stays a candidate."""


def _ordered_bits(depth: torch.Tensor) -> torch.Tensor:
    """(N,) float32 depths (no NaN) -> (N,) int64 in the same order; -0.0 equals +0.0.

    Positive floats order like their bit patterns; negative ones reversed, which flipping
    all bits but the sign undoes.
    """
    bits = (depth + 0.0).view(torch.int32)
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).long()


def _depth_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_ordered_bits`: (N,) int64 -> (N,) float32."""
    bits = bits.int()
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).view(torch.float32)


class _ZBuffer:
    """Nearest fragment per pixel as one int64 key (depth bits, rank): a single scatter-min
    per batch of fragments replaces a depth minimum followed by an index maximum."""

    def __init__(self, pixels: int) -> None:
        self.keys = torch.full((pixels,), _EMPTY_KEY, dtype=torch.int64)  # (H * W,)

    def add(self, pixel: torch.Tensor, depth: torch.Tensor, first_rank: int) -> None:
        """Fragments ranked first_rank, first_rank - 1, ... (so the last listed wins ties)."""
        rank = first_rank - torch.arange(len(pixel))
        self.keys.scatter_reduce_(0, pixel, (_ordered_bits(depth) << _RANK_BITS) + rank, "amin")

    def nearest_depth_bits(self, pixel: torch.Tensor) -> torch.Tensor:
        """(N,) ordered depth bits (:func:`_ordered_bits`) of the nearest fragment so far."""
        return self.keys.index_select(0, pixel) >> _RANK_BITS

    def winners(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Covered pixels in order: (pixel (M,), depth (M,) float32, rank (M,))."""
        pixel = torch.nonzero(self.keys < _FINITE_KEYS).squeeze(1)
        keys = self.keys.index_select(0, pixel)
        return pixel, _depth_from_bits(keys >> _RANK_BITS), keys & ((1 << _RANK_BITS) - 1)


def _expand(counts: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Enumerate ``counts[k]`` items of every owner k, in chunks of about ``_CHUNK_FRAGMENTS``.

    Yields (owner (N,), local (N,)): the owner of each item and its rank within the owner.
    """
    ends = torch.cumsum(counts, 0)
    start = 0
    while start < len(counts):
        base = int(ends[start - 1]) if start else 0
        stop = max(int(torch.searchsorted(ends, base + _CHUNK_FRAGMENTS, right=True)), start + 1)
        chunk = counts[start:stop]
        owner = torch.repeat_interleave(torch.arange(start, stop), chunk)  # (N,)
        if len(owner):
            first = torch.cumsum(chunk, 0) - chunk
            yield owner, torch.arange(len(owner)) - first.index_select(0, owner - start)
        start = stop


def _pixel_range(
    lo: torch.Tensor, hi: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels whose centre (index + 0.5) lies in [lo, hi]: (first index, count), clipped."""
    first = torch.ceil(lo - 0.5).clamp(0, size).long()
    last = torch.floor(hi - 0.5).clamp(-1, size - 1).long()
    return first, (last - first + 1).clamp(min=0)


_SpanFunction = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""(primitive index (R,), row centre y (R,) float64) -> x extent (left (R,), right (R,))."""


@dataclasses.dataclass
class _Spans:
    """A chunk of candidate pixels, grouped in pixel rows (runs of one primitive).

    Per row (R,): ``owner`` primitive, ``y`` pixel row, ``base`` flat index of its first
    candidate and ``x_centre`` that pixel's centre x; per candidate (N,): its ``row`` and
    ``offset`` from the row's first pixel.
    """

    owner: torch.Tensor
    y: torch.Tensor
    base: torch.Tensor
    x_centre: torch.Tensor
    row: torch.Tensor
    offset: torch.Tensor

    def pixel(self) -> torch.Tensor:
        """(N,) flat pixel index y * W + x of every candidate."""
        return self.base.index_select(0, self.row) + self.offset

    def x(self) -> torch.Tensor:
        """(N,) float32 pixel-centre x of every candidate."""
        return self.x_centre.index_select(0, self.row) + self.offset.float()

    def select(self, keep: torch.Tensor) -> _Spans:
        """The candidates at indices ``keep`` (N',)."""
        return dataclasses.replace(
            self, row=self.row.index_select(0, keep), offset=self.offset.index_select(0, keep)
        )


def _span_fragments(
    y_lo: torch.Tensor, y_hi: torch.Tensor, span: _SpanFunction, height: int, width: int
) -> Iterator[_Spans]:
    """Candidate pixels of K primitives, scanline by scanline, in chunks.

    Each primitive covers the pixel rows whose centre lies in [y_lo, y_hi] ((K,) each);
    ``span`` gives its x extent on each of those rows. Yields every pixel whose centre lies
    in a span, primitive by primitive, row by row, left to right.
    """
    y0, rows = _pixel_range(y_lo, y_hi, height)
    for owner, local in _expand(rows):
        row_y = y0.index_select(0, owner) + local  # (R,)
        left, right = span(owner, row_y.double() + 0.5)
        x0, count = _pixel_range(left, right, width)
        base, x_centre = row_y * width + x0, x0.float() + 0.5
        for row, offset in _expand(count):
            yield _Spans(owner, row_y, base, x_centre, row, offset)


def _triangle_fragments(tri: torch.Tensor, height: int, width: int) -> Iterator[_Spans]:
    """Pixels whose centre lies in each triangle, in chunks (see :func:`_span_fragments`).

    ``tri``: (F, 3 corners, 2 or more) with x, y first. On a row at height yc the span
    runs between the crossings of the edges, x = px + (yc - py) (qx - px) / (qy - py).
    Pixels on an edge shared by two triangles may come from both; the z-test keeps one.
    """
    corners = tri[:, :, :2].reshape(len(tri), 6).T.double()  # (6, F): x0, y0, x1, y1, x2, y2

    def span(owner: torch.Tensor, yc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = corners.index_select(1, owner)
        left = torch.full_like(yc, torch.inf)
        right = torch.full_like(yc, -torch.inf)
        for p, q in ((0, 1), (1, 2), (2, 0)):
            px, py, qx, qy = c[2 * p], c[2 * p + 1], c[2 * q], c[2 * q + 1]
            t = (yc - py) / torch.where(qy == py, 1.0, qy - py)
            crosses = (qy != py) & (t >= 0) & (t <= 1)
            x = px + t * (qx - px)
            left = torch.where(crosses, torch.minimum(left, x), left)
            right = torch.where(crosses, torch.maximum(right, x), right)
        return left - 1e-7, right + 1e-7

    yield from _span_fragments(tri[:, :, 1].amin(1), tri[:, :, 1].amax(1), span, height, width)


def _capsule_silhouettes(
    a: torch.Tensor, b: torch.Tensor, ra: torch.Tensor, rb: torch.Tensor, height: int, width: int
) -> Iterator[_Spans]:
    """Candidate pixels of round cones ((K, 3) ends, (K,) end radii), in chunks.

    A round cone seen along z covers the convex hull of its end discs (the projection of
    the hull of two spheres is the hull of their projections). On a row at height yc the
    hull's extent is the extreme crossings of the two circles and of the two outer tangent
    segments, widened by :data:`_SPAN_MARGIN`.
    """
    ends = torch.stack([a[:, 0], a[:, 1], ra, b[:, 0], b[:, 1], rb]).double()  # (6, K)
    ax, ay, rad_a, bx, by, rad_b = ends
    dx, dy = bx - ax, by - ay
    length = torch.sqrt(dx * dx + dy * dy)
    sine = (rad_a - rad_b) / length.clamp(min=1e-12)  # of the tangents' angle to the axis
    has_tangents = (length > 0) & (sine.abs() < 1)
    cosine = torch.sqrt((1 - sine * sine).clamp(min=0))
    ux, uy = dx / length.clamp(min=1e-12), dy / length.clamp(min=1e-12)
    tangent_points = []
    for side in (1.0, -1.0):  # outward normal sine u + side cosine u_perp, u_perp = (-uy, ux)
        nx, ny = sine * ux - side * cosine * uy, sine * uy + side * cosine * ux
        p_x, p_y = ax + rad_a * nx, ay + rad_a * ny
        q_x, q_y = bx + rad_b * nx, by + rad_b * ny
        # without outer tangents (one disc inside the other) the segment shrinks to a point
        tangent_points += [torch.where(has_tangents, v, ax) for v in (p_x, q_x)]
        tangent_points += [torch.where(has_tangents, v, ay) for v in (p_y, q_y)]
    table = torch.stack([*ends, *tangent_points])  # (14, K)

    def span(owner: torch.Tensor, yc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = table.index_select(1, owner)
        left = torch.full_like(yc, torch.inf)
        right = torch.full_like(yc, -torch.inf)
        for cx, cy, r in (c[0:3], c[3:6]):
            h = r * r - (yc - cy) ** 2
            half = torch.sqrt(h.clamp(min=0))
            crosses = h >= 0
            left = torch.where(crosses, torch.minimum(left, cx - half), left)
            right = torch.where(crosses, torch.maximum(right, cx + half), right)
        for px, qx, py, qy in (c[6:10], c[10:14]):
            t = (yc - py) / torch.where(qy == py, 1.0, qy - py)
            crosses = (qy != py) & (t >= 0) & (t <= 1)
            x = px + t * (qx - px)
            left = torch.where(crosses, torch.minimum(left, x), left)
            right = torch.where(crosses, torch.maximum(right, x), right)
        return left - _SPAN_MARGIN, right + _SPAN_MARGIN

    lo = torch.minimum(ay - rad_a, by - rad_b) - _SPAN_MARGIN
    hi = torch.maximum(ay + rad_a, by + rad_b) + _SPAN_MARGIN
    yield from _span_fragments(lo, hi, span, height, width)


def _to_buffers(fragments: _Fragments, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """_Fragments -> depth (H, W) (inf = background) and normal (H, W, 3) arrays."""
    pixel, depth, normal, _ = fragments
    depth_buffer = torch.full((height * width,), torch.inf)
    normal_buffer = torch.zeros(height * width, 3)
    depth_buffer[pixel] = depth
    normal_buffer[pixel] = normal
    return depth_buffer.view(height, width).numpy(), normal_buffer.view(height, width, 3).numpy()


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V, 3) float32, unit length (zero for unused vertices).

    Each triangle adds its cross product (length = twice its area) to its three vertices.
    """
    v = np.asarray(vertices, np.float64)
    tri = v[faces]  # (F, 3, 3)
    (a0, a1, a2), (b0, b1, b2) = (tri[:, 1] - tri[:, 0]).T, (tri[:, 2] - tri[:, 0]).T
    # the cross product, as np.cross computes it (its set-up costs more than the arithmetic)
    face_normal = np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], 1)  # (F, 3)
    index = faces.reshape(-1)
    summed = np.stack(
        [np.bincount(index, np.repeat(face_normal[:, k], 3), minlength=len(v)) for k in range(3)],
        axis=1,
    )
    length = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.divide(summed, length, out=np.zeros_like(summed), where=length > 0).astype(np.float32)


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise InputError(f"mesh vertices must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise InputError(
            f"mesh faces must be integers of shape (F, 3), got {faces.dtype} {faces.shape}"
        )
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputError(f"mesh faces index vertices outside 0..{len(vertices) - 1}")
    faces = faces.astype(np.int64)
    # Triangles touching a missing (NaN) vertex are skipped.
    finite = np.isfinite(vertices).all(axis=1)
    return vertices, faces[finite[faces].all(axis=1)]


def rasterize_mesh(
    vertices: np.ndarray, faces: np.ndarray, size: int | tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer a triangle mesh with smooth normals.

    Args:
        vertices: (V, 3) pixels x, y and depth z (larger = farther).
        faces: (F, 3) vertex indices.
        size: output side (square) or (height, width).

    Returns:
        depth (H, W) float32, ``inf`` where no triangle covers the pixel centre, and
        normal (H, W, 3) float32: the area-weighted vertex normals interpolated with the
        barycentric coordinates of the nearest triangle and normalised (zero on background).
    """
    height, width = _image_shape(size)
    vertices, faces = _check_mesh(vertices, faces)
    with _one_thread():
        fragments = _rasterize([(vertices, faces, 1.0)], None, height, width)
        return _to_buffers(fragments, height, width)


def _chunk_rows(rows: list[torch.Tensor], row_counts: list[int]) -> torch.Tensor:
    """Candidates' rows numbered across chunks: chunk k's ``rows[k]`` (N_k,) index its own
    ``row_counts[k]`` rows."""
    firsts = itertools.accumulate(row_counts[:-1], initial=0)
    return torch.cat([row + first for row, first in zip(rows, firsts, strict=True)])


class _MeshFragments:
    """Triangles of several meshes and their candidate pixels' barycentric coordinates.

    Depth at a pixel centre from its barycentric coordinates (Cramer's rule); the normal
    interpolates the area-weighted vertex normals and is computed only where the triangle
    wins the z-test.
    """

    def __init__(self, meshes: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        tris, corner_normals, albedos = [], [], []
        for vertices, faces, albedo in meshes:
            if not len(faces):
                continue
            faces_t = torch.from_numpy(faces)  # (F, 3)
            tri = torch.from_numpy(vertices).index_select(0, faces_t.view(-1)).view(-1, 3, 3)
            edge_1, edge_2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]  # (F, 3)
            area = edge_1[:, 0] * edge_2[:, 1] - edge_1[:, 1] * edge_2[:, 0]  # twice signed
            # triangles seen edge-on cover no pixel centre
            keep = torch.nonzero(area.abs() > 1e-8).squeeze(1)  # (F',)
            tri, edge_1, edge_2, area = (
                v.index_select(0, keep) for v in (tri, edge_1, edge_2, area)
            )
            corner = (
                torch.from_numpy(vertex_normals(vertices, faces))
                .index_select(0, faces_t.index_select(0, keep).view(-1))
                .view(-1, 3, 3)
            )  # (F', 3 corners, 3)
            tris.append((tri, edge_1, edge_2, 1.0 / area))
            corner_normals.append(
                torch.cat(
                    [corner[:, 0], corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0]], 1
                )
            )
            albedos.append(torch.full((len(keep),), float(albedo)))
        self.count = sum(len(t[0]) for t in tris)
        if not self.count:
            return
        tri, edge_1, edge_2, inv_area = (torch.cat(column) for column in zip(*tris, strict=True))
        self.tri = tri  # (T, 3, 3)
        # per-triangle rows: x0, y0, z0, e1 xyz, e2 xyz, 1 / area: (10, T)
        self.table = torch.cat([tri[:, 0], edge_1, edge_2, inv_area[:, None]], 1).T.contiguous()
        self.corner_normals = torch.cat(corner_normals)  # (T, 9): n0, n1 - n0, n2 - n0
        self.albedo = torch.cat(albedos)  # (T,)
        self.rows: list[torch.Tensor] = []  # per chunk: the triangle of each row (R,)
        self.hit: list[tuple[torch.Tensor, ...]] = []  # per chunk: row, w1, w2 (N,)

    def draw(self, zbuffer: _ZBuffer, height: int, width: int) -> None:
        """Z-test every candidate pixel (ranks below :data:`_MESH_RANKS`, last listed wins)."""
        if not self.count:
            return
        drawn = 0
        for spans in _triangle_fragments(self.tri, height, width):
            x0, y0, z0, e1x, e1y, e1z, e2x, e2y, e2z, inv_area = self.table.index_select(
                1, spans.owner
            )  # per row (R,)
            y = spans.y.float() + 0.5 - y0
            rows = torch.stack([x0, e2y, y * e2x, y * e1x, e1y, inv_area, z0, e1z, e2z])  # (9, R)
            r_x0, r_e2y, r_ye2x, r_ye1x, r_e1y, r_inv, r_z0, r_e1z, r_e2z = rows.index_select(
                1, spans.row
            )
            x = spans.x() - r_x0
            # Barycentric coordinates of the pixel centre (Cramer's rule).
            w1 = (x * r_e2y - r_ye2x) * r_inv
            w2 = (r_ye1x - x * r_e1y) * r_inv
            z = r_z0 + w1 * r_e1z + w2 * r_e2z
            zbuffer.add(spans.pixel(), z, _MESH_RANKS - 1 - drawn)
            drawn += len(z)
            self.rows.append(spans.owner)
            self.hit.append((spans.row, w1, w2))

    def shade_input(self, rank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit normal (M, 3) and albedo (M,) of the winning fragments of these ranks."""
        if not len(rank):
            return torch.zeros(0, 3), torch.zeros(0)
        index = _MESH_RANKS - 1 - rank
        rows = _chunk_rows([hit[0] for hit in self.hit], [len(owner) for owner in self.rows])
        row = rows.index_select(0, index)
        triangle = torch.cat(self.rows).index_select(0, row)
        w1, w2 = (torch.cat(w).index_select(0, index)[:, None] for w in list(zip(*self.hit))[1:])
        corner = self.corner_normals.index_select(0, triangle)  # (M, 9)
        n = corner[:, 0:3] + w1 * corner[:, 3:6] + w2 * corner[:, 6:9]
        return torch.nn.functional.normalize(n, dim=1), self.albedo.index_select(0, triangle)


def rasterize_capsules(
    start: np.ndarray, end: np.ndarray, radius: np.ndarray, size: int | tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer the union of (tapered) capsules; a sphere where ``start == end``.

    A tapered capsule ("round cone") is the convex hull of a sphere of radius r_a at
    ``start`` and one of radius r_b at ``end``; equal radii give a plain capsule. Each
    pixel casts a ray along +z and its first hit is solved in closed form: a quadratic for
    the cone tangent to both spheres, valid while the hit lies between the tangent circles,
    otherwise the nearer of the two end spheres (Quilez's ray / round-cone intersection).

    Args:
        start, end: (K, 3) segment ends in pixels (z larger = farther).
        radius: (K,) radii, or (K, 2) radii at ``start`` and at ``end``, in pixels.
        size: output side (square) or (height, width).

    Returns:
        depth (H, W) float32 (``inf`` = background) and unit surface normal (H, W, 3).
    """
    height, width = _image_shape(size)
    start = np.asarray(start, np.float64).reshape(-1, 3)
    end = np.asarray(end, np.float64).reshape(-1, 3)
    radius = np.asarray(radius, np.float64)
    radius = np.stack([radius, radius], 1) if radius.ndim == 1 else radius
    if radius.shape != (len(start), 2) or len(end) != len(start):
        raise InputError(
            "capsules need start (K, 3), end (K, 3) and radius (K,) or (K, 2), got "
            f"{start.shape}, {end.shape}, {radius.shape}"
        )
    with _one_thread():
        cones = np.concatenate([start, end, radius], 1)
        return _to_buffers(_rasterize([], cones, height, width), height, width)


class _CapsuleFragments:
    """Round cones ((K, 8) rows: start xyz, end xyz, start and end radius) and the ray hits
    of their candidate pixels.

    Quilez's round-cone quadratic is used divided through by |b - a|^2 (unit axis u,
    rr' = (ra - rb) / |b - a|): its terms are then squared pixel distances, which float32
    differences accurately. The normal is computed only where the cone wins the z-test.
    """

    def __init__(self, cones: np.ndarray) -> None:
        keep = np.isfinite(cones).all(1) & (cones[:, 6:] > 0).all(1)
        self.count = int(keep.sum())
        if not self.count:
            return
        cones = torch.from_numpy(cones[keep].astype(np.float32))
        a, b = cones[:, 0:3], cones[:, 3:6]  # (K, 3)
        ra, rb = cones[:, 6], cones[:, 7]  # (K,)
        length = (b - a).norm(dim=1)  # (K,)
        is_sphere = length < 1e-4
        inv_length = torch.where(is_sphere, 0.0, 1.0 / length.clamp(min=1e-4))
        u = (b - a) * inv_length[:, None]  # unit axis (zero for a sphere)
        slope = (ra - rb) * inv_length  # rr': how fast the radius shrinks along the axis
        d2 = 1.0 - slope**2  # (squared tangent length) / |b - a|^2
        # Quadratic in t for the cone: k2 t^2 + 2 k1 t + k0 = 0, k2 = ux^2 + uy^2 - rr'^2.
        k2 = u[:, 0] ** 2 + u[:, 1] ** 2 - slope**2
        self.cone_ok = ~is_sphere & (k2 > 1e-6)  # else the cone is seen end-on: only spheres
        self.a, self.b, self.ra, self.rb = a, b, ra, rb
        self.u, self.slope, self.d2 = u, slope, d2
        # Per-cone rows: (15, K).
        self.table = torch.stack(
            [
                *a.T,
                *(b - a).T,
                *u.T,
                ra,
                rb * rb,
                slope,
                d2 * length,
                d2,
                torch.where(self.cone_ok, k2, 1.0),
            ]
        )
        self.rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # per chunk: owner, dy (R,)
        self.hit: list[tuple[torch.Tensor, ...]] = []  # per chunk: row, dx, on body, nearer a
        self.candidates = 0  # pixels whose ray was solved

    def draw(self, zbuffer: _ZBuffer, height: int, width: int, occluded: bool) -> None:
        """Z-test every candidate pixel (ranks from 2^32 - 2 down, last listed wins).

        With ``occluded``, the meshes already in ``zbuffer`` win depth ties: candidate
        pixels where a cone's nearest possible point, min(a_z - r_a, b_z - r_b) (a round
        cone is the convex hull of its end spheres), lies behind them by more than
        :data:`_OCCLUSION_MARGIN` are skipped before the ray is solved. Such a pixel could
        only lose the z-test, so the image does not change.
        """
        if not self.count:
            return
        if occluded:
            nearest = torch.minimum(self.a[:, 2] - self.ra, self.b[:, 2] - self.rb)  # (K,)
            pixels, relative = _OCCLUSION_MARGIN
            cull_beyond = _ordered_bits(nearest - pixels - relative * nearest.abs())
        drawn = 0
        for spans in _capsule_silhouettes(self.a, self.b, self.ra, self.rb, height, width):
            owner = spans.owner
            pixel = spans.pixel()
            if occluded:
                seen = cull_beyond.index_select(0, owner).index_select(0, spans.row) <= (
                    zbuffer.nearest_depth_bits(pixel)
                )
                keep = torch.nonzero(seen).squeeze(1)
                if not len(keep):
                    continue
                spans, pixel = spans.select(keep), pixel.index_select(0, keep)
            # Ray from (x, y, az) along +z; t is the depth offset from az. Per row (R,):
            ax, ay, az, bax, bay, baz, ux, uy, uz, ra, rb2, slope, y_max, d2, k2 = (
                self.table.index_select(1, owner)
            )
            dy = spans.y.float() + 0.5 - ay
            rows = torch.stack(
                [
                    ax,
                    ux,
                    uy * dy,
                    dy * dy,
                    uz,
                    d2,
                    slope,
                    ra,
                    k2,
                    y_max,
                    rb2,
                    bax,
                    (dy - bay) ** 2,
                    baz,
                    az,
                ]
            )  # (15, R)
            cone_ok = self.cone_ok.index_select(0, owner).index_select(0, spans.row)
            (
                r_ax, r_ux, r_uy_dy, r_dy2, r_uz, r_d2, r_slope, r_ra, r_k2, r_y_max, r_rb2, r_bax,
                r_dyb2, r_baz, r_az,
            ) = rows.index_select(1, spans.row)  # fmt: skip
            r_sr, r_ra2 = r_slope * r_ra, r_ra * r_ra
            dx = spans.x() - r_ax
            k = r_ux * dx + r_uy_dy  # u . (ray origin - a)
            m5 = dx * dx + r_dy2
            k1 = r_uz * (r_sr - k)
            k0 = r_d2 * m5 - k * k + 2 * k * r_slope * r_ra - r_ra2
            h = k1 * k1 - k0 * r_k2
            t_body = (-torch.sqrt(h.clamp(min=0)) - k1) / r_k2
            y_body = k - r_sr + t_body * r_uz  # position along the axis, times 1/|b - a|
            on_body = cone_ok & (h >= 0) & (y_body > 0) & (y_body < r_y_max)
            h_a = r_ra2 - m5
            h_b = r_rb2 - (dx - r_bax) ** 2 - r_dyb2
            t_a = torch.where(h_a >= 0, -torch.sqrt(h_a.clamp(min=0)), torch.inf)
            t_b = torch.where(h_b >= 0, r_baz - torch.sqrt(h_b.clamp(min=0)), torch.inf)
            may_hit = ~cone_ok | (h >= 0)  # a ray that misses the infinite cone misses all
            t_cap = torch.where(may_hit, torch.minimum(t_a, t_b), torch.inf)
            z = r_az + torch.where(on_body, t_body, t_cap)
            zbuffer.add(pixel, z, (1 << _RANK_BITS) - 2 - drawn)
            drawn += len(z)
            self.rows.append((owner, dy))
            self.hit.append((spans.row, dx, on_body, t_a <= t_b))
        self.candidates = drawn

    def shade_input(self, rank: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Unit normal (M, 3) of the winning fragments of these ranks at these depths.

        From the hit point p: cone d2 (p - a) - u (u.(p - a) - ra rr'); spheres (p - centre).
        """
        if not len(rank):
            return torch.zeros(0, 3)
        index = (1 << _RANK_BITS) - 2 - rank
        rows = _chunk_rows([hit[0] for hit in self.hit], [len(owner) for owner, _ in self.rows])
        row = rows.index_select(0, index)
        c, dy = (torch.cat(column).index_select(0, row) for column in zip(*self.rows, strict=True))
        dx, on_body, nearer_a = (
            torch.cat(column).index_select(0, index) for column in list(zip(*self.hit))[1:]
        )
        u, ra, slope, d2, ba = (
            v.index_select(0, c) for v in (self.u, self.ra, self.slope, self.d2, self.b - self.a)
        )
        pa = torch.stack([dx, dy, depth - self.a[:, 2].index_select(0, c)], 1)  # (M, 3) p - a
        axial = u[:, 0] * dx + u[:, 1] * dy + u[:, 2] * pa[:, 2] - ra * slope
        cone_n = d2[:, None] * pa - u * axial[:, None]
        sphere_n = torch.where(nearer_a[:, None], pa, pa - ba)
        n = torch.where(on_body[:, None], cone_n, sphere_n)
        return torch.nn.functional.normalize(n, dim=1)


def _rasterize(
    meshes: list[tuple[np.ndarray, np.ndarray, float]],
    cones: np.ndarray | None,
    height: int,
    width: int,
) -> _Fragments:
    """Nearest surface at every pixel over meshes (validated (vertices, faces, albedo)) and
    round cones ((K, 8) rows: start xyz, end xyz, start and end radius; albedo 1).

    Meshes are drawn first and win depth ties, so capsule pixels hidden behind them are
    skipped unsolved (the head sphere behind the face mesh).
    """
    zbuffer = _ZBuffer(height * width)
    mesh = _MeshFragments(meshes)
    mesh.draw(zbuffer, height, width)
    capsules = _CapsuleFragments(np.zeros((0, 8)) if cones is None else cones)
    capsules.draw(zbuffer, height, width, occluded=mesh.count > 0)
    pixel, depth, rank = zbuffer.winners()
    on_mesh = rank < _MESH_RANKS
    at_mesh, at_capsule = torch.nonzero(on_mesh).squeeze(1), torch.nonzero(~on_mesh).squeeze(1)
    mesh_normal, mesh_albedo = mesh.shade_input(rank.index_select(0, at_mesh))
    capsule_depth = depth.index_select(0, at_capsule)
    return (
        torch.cat([pixel.index_select(0, at_mesh), pixel.index_select(0, at_capsule)]),
        torch.cat([depth.index_select(0, at_mesh), capsule_depth]),
        torch.cat(
            [mesh_normal, capsules.shade_input(rank.index_select(0, at_capsule), capsule_depth)]
        ),
        torch.cat([mesh_albedo, torch.ones(len(at_capsule))]),
    )


def _lambert(normal: torch.Tensor, albedo: torch.Tensor, color: tuple[float, ...]) -> torch.Tensor:
    """(M, 3) normals, (M,) albedo -> (M, 3) uint8 colours, lit from both sides."""
    light = torch.nn.functional.normalize(torch.tensor(LIGHT_DIRECTION), dim=0)  # (3,)
    # A normal pointing away from the camera is mirrored in z, so thin open surfaces
    # (face mesh, palms) seen from behind are lit like their front.
    facing = torch.cat([normal[:, :2], -normal[:, 2:].abs()], 1)
    lambert = (facing @ light).clamp(min=0)  # (M,)
    intensity = albedo * (AMBIENT + (1.0 - AMBIENT) * lambert)
    rgb = intensity[:, None] * (torch.tensor(color, dtype=torch.float32) * 255.0)
    return torch.round(rgb.clamp(0, 255)).to(torch.uint8)


def shade(
    depth: np.ndarray,
    normal: np.ndarray,
    albedo: np.ndarray | float = 1.0,
    color: tuple[float, float, float] = SURFACE_COLOR,
) -> np.ndarray:
    """Lambert shading of z-buffer output -> (H, W, 3) uint8, black where depth is inf.

    ``depth`` (H, W), ``normal`` (H, W, 3), ``albedo`` scalar or (H, W). Surfaces are lit
    from both sides (see :func:`_lambert`).
    """
    depth = np.asarray(depth, np.float32)
    covered = np.isfinite(depth)
    albedo = np.broadcast_to(np.asarray(albedo, np.float32), depth.shape)
    image = np.zeros((*depth.shape, 3), np.uint8)
    with _one_thread():
        image[covered] = _lambert(
            torch.from_numpy(np.asarray(normal, np.float32)[covered]),
            torch.from_numpy(albedo[covered]),
            color,
        ).numpy()
    return image


# --------------------------------------------------------------------------- landmarks -> scene


class _Scene:
    """Primitives of one frame: tapered capsules (spheres) and meshes with an albedo each."""

    def __init__(self) -> None:
        self.cones: list[tuple] = []  # rows (start xyz, end xyz, start radius, end radius)
        self.meshes: list[tuple[np.ndarray, np.ndarray, float]] = []

    def capsule(
        self, start: np.ndarray, end: np.ndarray, radius: float, end_radius: float | None = None
    ) -> None:
        """A capsule, tapered to ``end_radius`` at ``end`` when given (not finite: not drawn)."""
        end_radius = radius if end_radius is None else end_radius
        self.cones.append((*start, *end, radius, end_radius))

    def sphere(self, centre: np.ndarray, radius: float) -> None:
        self.capsule(centre, centre, radius)

    def mesh(self, vertices: np.ndarray, faces: np.ndarray, albedo: float = 1.0) -> None:
        self.meshes.append((np.asarray(vertices, np.float32), np.asarray(faces, np.int64), albedo))

    def render(self, height: int, width: int, color: tuple[float, float, float]) -> np.ndarray:
        """Nearest surface over all primitives, shaded -> (H, W, 3) uint8."""
        meshes = [
            (*_check_mesh(vertices, faces), albedo) for vertices, faces, albedo in self.meshes
        ]
        cones = np.array(self.cones, np.float64) if self.cones else None  # (K, 8)
        pixel, _, normal, albedo = _rasterize(meshes, cones, height, width)
        image = torch.zeros(height * width, 3, dtype=torch.uint8)
        image.index_copy_(0, pixel, _lambert(normal, albedo, color))
        return image.view(height, width, 3).numpy()


def _finite(*points: np.ndarray) -> bool:
    return all(np.isfinite(p).all() for p in points)


def _facing_camera(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``faces`` with the winding flipped if the open surface's summed normal points away."""
    tri = vertices[faces].astype(np.float64)
    summed = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).sum(0)
    return faces[:, ::-1].copy() if summed[2] > 0 else faces


def _add_face(scene: _Scene, face: np.ndarray) -> np.ndarray | None:
    """Face mesh, mouth cavity and skull sphere. Returns the skull centre (None: no skull)."""
    points = face[:_FACE_MESH_POINTS]
    faces, mouth = face_triangles(), face_mouth_mask()
    usable = np.isfinite(points).all(1)
    faces_ok = usable[faces].all(1)
    skin = faces[faces_ok & ~mouth]
    if not len(skin):
        return None
    oriented = _facing_camera(points, skin)
    mouth_faces = faces[faces_ok & mouth]
    scene.mesh(points, oriented)
    if len(mouth_faces):
        flipped = oriented is not skin
        scene.mesh(points, mouth_faces[:, ::-1] if flipped else mouth_faces, MOUTH_ALBEDO)
    anchors = points[[_FACE_RIGHT_CHEEK, _FACE_LEFT_CHEEK, _FACE_TOP, _FACE_CHIN]]
    if not _finite(anchors):
        return None
    right, left, top, chin = anchors.astype(np.float64)
    face_width = float(np.linalg.norm(left - right))
    radius = _SKULL_RADIUS * face_width
    centre = (right + left) / 2 + 0.15 * (top - chin)
    # Push the skull back until its front lies behind every face point it covers.
    valid = points[usable].astype(np.float64)
    planar = np.sum((valid[:, :2] - centre[:2]) ** 2, axis=1)
    inside = planar < radius**2
    if inside.any():
        needed = valid[inside, 2] + np.sqrt(radius**2 - planar[inside]) + 0.02 * face_width
        centre[2] = max(centre[2], float(needed.max()))
    scene.sphere(centre, radius)
    return centre


def _hand_scale(hand: np.ndarray) -> float:
    return float(np.linalg.norm(hand[_HAND_MIDDLE_MCP] - hand[_HAND_WRIST]))


def _add_hand(scene: _Scene, hand: np.ndarray) -> None:
    """Digits and palm as tapered capsules, scaled by the hand's own size."""
    radius = _HAND_RADIUS * _hand_scale(hand)  # NaN if wrist or knuckle is missing
    for a, b in _HAND_BONES:
        scene.capsule(hand[a], hand[b], radius[a], radius[b])


def _add_body(
    scene: _Scene,
    pose: np.ndarray,
    visibility: np.ndarray | None,
    hands: dict[str, np.ndarray | None],
    skull_centre: np.ndarray | None,
) -> None:
    """Torso, shoulders, neck, head (unless the face gave a skull), arms, legs."""
    if not _finite(pose[_LEFT_SHOULDER], pose[_RIGHT_SHOULDER]):
        return
    pose = pose.astype(np.float64)
    left_sh, right_sh = pose[_LEFT_SHOULDER], pose[_RIGHT_SHOULDER]
    scale = float(np.linalg.norm(left_sh - right_sh))
    radius = _POSE_RADIUS * scale  # (33,)
    scene.capsule(left_sh, right_sh, radius[_LEFT_SHOULDER])
    if _finite(pose[_LEFT_HIP], pose[_RIGHT_HIP]):
        scene.mesh(*_torso_mesh(left_sh, right_sh, pose[_LEFT_HIP], pose[_RIGHT_HIP], scale))

    head_centre = skull_centre
    if head_centre is None and _finite(pose[_LEFT_EAR], pose[_RIGHT_EAR]):
        head_centre = (pose[_LEFT_EAR] + pose[_RIGHT_EAR]) / 2
        ear_distance = float(np.linalg.norm(pose[_LEFT_EAR] - pose[_RIGHT_EAR]))
        scene.sphere(head_centre, _HEAD_RADIUS_FROM_EARS * ear_distance)
    if head_centre is not None:
        scene.capsule((left_sh + right_sh) / 2, head_centre, _NECK_RADIUS * scale)

    for side, (shoulder, elbow, wrist) in _ARMS.items():
        scene.capsule(pose[shoulder], pose[elbow], radius[shoulder], radius[elbow])
        hand = hands[side]
        if hand is not None and _finite(hand[_HAND_WRIST]):
            # The forearm ends in the hand model's wrist, as thick as the hand's wrist.
            hand_wrist_radius = _HAND_RADIUS[_HAND_WRIST] * _hand_scale(hand)
            scene.capsule(pose[elbow], hand[_HAND_WRIST], radius[elbow], hand_wrist_radius)
        else:
            scene.capsule(pose[elbow], pose[wrist], radius[elbow], radius[wrist])
            for a, b in _POSE_HAND_BONES[side]:
                scene.capsule(pose[a], pose[b], radius[a], radius[b])

    seen = np.ones(len(pose), bool) if visibility is None else visibility >= _MIN_VISIBILITY
    for a, b in _LEG_BONES:
        if seen[a] and seen[b]:
            scene.capsule(pose[a], pose[b], radius[a], radius[b])


def _torso_mesh(
    left_sh: np.ndarray,
    right_sh: np.ndarray,
    left_hip: np.ndarray,
    right_hip: np.ndarray,
    scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Front half of an elliptic cylinder from the shoulder line to the hip line.

    Rows run from above the shoulders (v < 0) to below the hip joints (v > 1), columns
    across the body at angle theta in [-pi/2, pi/2]: point = centre(v) + f(v)
    (half_width(v) sin(theta) - half_depth cos(theta) z_hat). Near both ends the profile
    f(v) falls along a quarter ellipse to zero, which rounds the shoulders and the base of
    the neck into a dome, and the pelvis likewise.
    Returns vertices (R*C, 3) and faces ((R-1)*(C-1)*2, 3) facing the camera.
    """
    dome, rounded = _TORSO_DOME, 0.1  # cap height beyond each end; f(v) < 1 within rounded
    rows, cols = 14, 13
    v = np.linspace(-dome, 1.0 + dome, rows)[:, None, None]  # (R, 1, 1)
    theta = np.linspace(-np.pi / 2, np.pi / 2, cols)[None, :, None]  # (1, C, 1)
    into_cap = np.maximum(rounded - v, v - 1 + rounded) / (rounded + dome)
    profile = np.sqrt(1 - np.clip(into_cap, 0, 1) ** 2)  # (R, 1, 1)
    hips = np.asarray([left_hip, right_hip], np.float64)
    half_hip = (hips[0] - hips[1]) / 2 * _HIP_WIDTH_FACTOR
    centre = (1 - v) * (left_sh + right_sh) / 2 + v * hips.mean(0)  # (R, 1, 3)
    half_width = (1 - v) * (left_sh - right_sh) / 2 + v * half_hip  # (R, 1, 3)
    forward = np.array([0.0, 0.0, -1.0]) * _TORSO_HALF_DEPTH * scale
    vertices = centre + profile * (half_width * np.sin(theta) + forward * np.cos(theta))
    grid = np.arange(rows * cols).reshape(rows, cols)
    quad = np.stack([grid[:-1, :-1], grid[:-1, 1:], grid[1:, 1:], grid[1:, :-1]], -1).reshape(-1, 4)
    faces = np.concatenate([quad[:, [0, 1, 2]], quad[:, [0, 2, 3]]])
    vertices = vertices.reshape(-1, 3).astype(np.float32)
    return vertices, _facing_camera(vertices, faces)


def _check_frame(frame: dict[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
    out = {}
    for part, count in POINTS_PER_PART.items():
        points = frame.get(part)
        if points is not None:
            points = np.asarray(points, np.float32)
            if points.shape != (count, 3):
                raise InputError(
                    f"{part} landmarks must have shape ({count}, 3), got {points.shape}"
                )
        out[part] = points
    return out


def render_frame(
    frame: dict[str, np.ndarray | None],
    size: int | tuple[int, int],
    *,
    visibility: np.ndarray | None = None,
    mesh: tuple[np.ndarray, np.ndarray] | None = None,
    color: tuple[float, float, float] = SURFACE_COLOR,
) -> np.ndarray:
    """Render one frame of landmarks as a shaded 3D surface -> (H, W, 3) uint8.

    Args:
        frame: part name -> (N, 3) pixel points or None (``LandmarkSequence.frame(i)``):
            "pose" (33), "left_hand" / "right_hand" (21), "face" (478). Missing parts
            are skipped; an empty frame is all black.
        size: output side (square) or (height, width); points are in this pixel space.
        visibility: (33,) pose visibility; legs are drawn only where it is >= 0.5 at both
            ends of a bone (None: legs always drawn).
        mesh: optional extra triangle mesh (vertices (V, 3) pixels, faces (F, 3)) drawn
            into the same z-buffer, e.g. an SMPL-X body.
        color: RGB albedo in [0, 1].
    """
    height, width = _image_shape(size)
    frame = _check_frame(frame)
    scene = _Scene()
    skull_centre = _add_face(scene, frame["face"]) if frame["face"] is not None else None
    for side in ("left_hand", "right_hand"):
        if frame[side] is not None:
            _add_hand(scene, frame[side])
    if frame["pose"] is not None:
        vis = None if visibility is None else np.asarray(visibility, np.float32).reshape(-1)
        if vis is not None and vis.shape != (POINTS_PER_PART["pose"],):
            raise InputError(f"pose visibility must have shape (33,), got {vis.shape}")
        _add_body(scene, frame["pose"], vis, frame, skull_centre)
    if mesh is not None:
        scene.mesh(*_check_mesh(*mesh))
    with _one_thread():
        return scene.render(height, width, color)


def render_mesh_frame(
    vertices: np.ndarray,
    faces: np.ndarray,
    size: int | tuple[int, int],
    *,
    color: tuple[float, float, float] = SURFACE_COLOR,
) -> np.ndarray:
    """Render a triangle mesh (e.g. SMPL-X, projected to pixels) -> (H, W, 3) uint8.

    ``vertices`` (V, 3): x, y in output pixels, z depth (larger = farther); ``faces``
    (F, 3) vertex indices wound so that cross(v1 - v0, v2 - v0) points outwards (as the
    ``smplx`` package's faces do in this right-handed x right, y down, z away frame).
    """
    depth, normal = rasterize_mesh(vertices, faces, size)
    return shade(depth, normal, color=color)


def render_sequence(
    seq: LandmarkSequence,
    size: int | None = None,
    *,
    progress: bool = False,
    color: tuple[float, float, float] = SURFACE_COLOR,
) -> Iterator[np.ndarray]:
    """Render every frame of ``seq`` -> iterator of (size, size, 3) uint8.

    ``seq.image_size`` must be square (crop first); with ``size`` other than its side,
    all coordinates (z too) are scaled by ``size / side``. None renders at the crop size.
    """
    width, height = seq.image_size
    if width != height:
        raise InputError(
            f"renders are square: crop the landmarks to a square first (image size {width}x{height})"
        )
    size = width if size is None else int(size)
    _image_shape(size)
    factor = np.float32(size / width)
    for i in tqdm(range(len(seq)), desc="render", unit="frame", disable=not progress):
        frame = {
            part: None if points is None else points * factor
            for part, points in seq.frame(i).items()
        }
        yield render_frame(frame, size, visibility=seq.pose_visibility[i], color=color)
