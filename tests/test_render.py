"""Tests for the structure-condition renderer (anchorgen.prepare.render)."""

from __future__ import annotations

import collections
import time

import numpy as np
import pytest
import torch

from anchorgen.errors import InputError
from anchorgen.landmarks import LandmarkSequence
from anchorgen.prepare import render
from anchorgen.prepare.render import (
    face_mouth_mask,
    face_triangles,
    rasterize_capsules,
    rasterize_mesh,
    render_frame,
    render_mesh_frame,
    render_sequence,
    shade,
)

# --------------------------------------------------------------------------- fixtures


def _face_mesh_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) and how many triangles use each (E,)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    return np.unique(edges, axis=0, return_counts=True)


def synthetic_face(centre: tuple[float, float], width: float, z: float) -> np.ndarray:
    """(478, 3) face landmarks with the mesh's own topology: a Tutte embedding.

    The open border of the mesh is laid on an ellipse and every inner point is the mean
    of its neighbours (a planar mesh without fold-overs), then lifted onto a half
    ellipsoid bulging towards the camera.
    """
    faces = face_triangles()
    edges, counts = _face_mesh_edges(faces)
    neighbours = collections.defaultdict(list)
    for a, b in edges[counts == 1]:
        neighbours[a].append(b)
        neighbours[b].append(a)
    loop = [min(neighbours)]
    while len(loop) < len(neighbours):
        loop.append(next(n for n in neighbours[loop[-1]] if n not in loop[-2:]))
    n = 468
    laplacian = np.zeros((n, n))
    laplacian[edges[:, 0], edges[:, 1]] = laplacian[edges[:, 1], edges[:, 0]] = -1
    laplacian[np.arange(n), np.arange(n)] = -laplacian.sum(1)
    angle = 2 * np.pi * np.arange(len(loop)) / len(loop)
    uv = np.zeros((n, 2))
    uv[loop] = np.stack([np.cos(angle), np.sin(angle)], 1)
    inner = np.setdiff1d(np.arange(n), loop)
    uv[inner] = np.linalg.solve(
        laplacian[np.ix_(inner, inner)], -laplacian[np.ix_(inner, loop)] @ uv[loop]
    )
    bulge = np.sqrt(np.clip(1 - (uv**2).sum(1), 0, 1))
    points = np.zeros((478, 3), np.float32)
    points[:n, 0] = centre[0] + uv[:, 0] * width / 2
    points[:n, 1] = centre[1] + uv[:, 1] * width * 0.65
    points[:n, 2] = z - bulge * width * 0.3
    points[n:] = points[:n].mean(0)  # irises: not part of the mesh
    return points


def synthetic_hand(wrist: np.ndarray, scale: float, down: float = 1.0) -> np.ndarray:
    """(21, 3) an open hand hanging from ``wrist`` (fingers along +y when down=1)."""
    hand = np.zeros((21, 3), np.float32)
    hand[0] = wrist
    spread = (-0.45, -0.2, 0.0, 0.2, 0.38)  # thumb .. pinky, across x
    lengths = (0.55, 0.95, 1.0, 0.95, 0.8)
    for digit, (dx, length) in enumerate(zip(spread, lengths, strict=True)):
        for joint in range(4):
            reach = 0.35 + (1.0 if digit else 0.6) * length * (joint + 1) / 4
            hand[1 + 4 * digit + joint] = wrist + scale * np.array([dx, down * reach, -0.05])
    return hand


def synthetic_frame(size: int = 256) -> tuple[dict[str, np.ndarray | None], np.ndarray]:
    """A standing person facing the camera, arms down, legs below the knees unseen."""
    s = size / 256
    pose = np.zeros((33, 3), np.float32)
    pose[0] = (128, 62, -30)
    pose[1:7] = (128, 55, -25)  # eyes
    pose[7], pose[8] = (146, 58, -5), (110, 58, -5)  # ears: left on the image right
    pose[9:11] = (128, 72, -25)
    pose[11], pose[12] = (166, 104, 0), (90, 104, 0)  # shoulders
    pose[13], pose[14] = (180, 152, -5), (76, 152, -5)  # elbows
    pose[15], pose[16] = (184, 196, -20), (72, 196, -20)  # wrists
    for k, wrist in ((17, 15), (19, 15), (21, 15), (18, 16), (20, 16), (22, 16)):
        pose[k] = pose[wrist] + (0, 14, -2)
    pose[23], pose[24] = (150, 206, 5), (106, 206, 5)  # hips
    pose[25], pose[26] = (152, 262, 0), (104, 262, 0)  # knees (below a 256 image)
    pose[27:33] = (128, 320, 0)
    visibility = np.ones(33, np.float32)
    visibility[25:] = 0.1
    frame = {
        "pose": pose * s,
        "face": synthetic_face((128, 60), 44, -30) * s,
        "left_hand": synthetic_hand(pose[15], 16) * s,
        "right_hand": synthetic_hand(pose[16], 16) * s,
    }
    return frame, visibility


def _brightness(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32).sum(-1)


# --------------------------------------------------------------------------- face mesh


def test_face_triangles_form_the_canonical_disk():
    import mediapipe as mp

    faces = face_triangles()
    assert faces.shape == (898, 3)  # the canonical face model's triangle count
    assert faces.min() == 0 and faces.max() == 467
    assert set(np.unique(faces)) == set(range(468))
    edges, counts = _face_mesh_edges(faces)
    assert counts.max() == 2  # a manifold
    assert 468 - len(edges) + len(faces) == 1  # Euler characteristic of a disk
    tessellation = {
        tuple(sorted(e)) for e in mp.solutions.face_mesh_connections.FACEMESH_TESSELATION
    }
    assert tessellation <= {tuple(e) for e in edges}  # every MediaPipe edge is used
    # The only border is the face oval; eyes and mouth are closed.
    oval = {tuple(sorted(e)) for e in mp.solutions.face_mesh_connections.FACEMESH_FACE_OVAL}
    assert {tuple(e) for e in edges[counts == 1]} == oval
    # Consistent orientation: every directed edge appears once.
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)
    assert not faces.flags.writeable


def test_face_mouth_mask_closes_the_inner_lips():
    import mediapipe as mp

    mouth = face_mouth_mask()
    assert mouth.shape == (898,) and mouth.sum() == 18  # a 20-point loop needs 18 triangles
    lips = {p for e in mp.solutions.face_mesh_connections.FACEMESH_LIPS for p in e}
    assert set(np.unique(face_triangles()[mouth])) <= lips


# --------------------------------------------------------------------------- primitives


def _union_of_spheres_depth(start, end, r_start, r_end, x, y) -> float:
    """Brute force front depth of a tapered capsule: min over t of z(t) - sqrt(r(t)^2 - d^2)."""
    t = np.linspace(0, 1, 20001)[:, None]
    centre = (1 - t) * np.asarray(start) + t * np.asarray(end)
    radius = (1 - t[:, 0]) * r_start + t[:, 0] * r_end
    d2 = (x - centre[:, 0]) ** 2 + (y - centre[:, 1]) ** 2
    inside = d2 <= radius**2
    return float(np.min(centre[inside, 2] - np.sqrt(radius[inside] ** 2 - d2[inside])))


@pytest.mark.parametrize(
    ("start", "end", "radii"),
    [
        ((20.0, 30.0, 40.0), (50.0, 36.0, 40.0), (8.0, 8.0)),  # parallel to the image
        ((20.0, 30.0, 40.0), (44.0, 40.0, 80.0), (8.0, 8.0)),  # tilted away
        ((20.0, 30.0, 60.0), (44.0, 40.0, 10.0), (9.0, 5.0)),  # tapered, tilted towards
        ((30.0, 30.0, 50.0), (34.0, 32.0, 20.0), (10.0, 6.0)),  # nearly along the view
    ],
)
def test_capsule_depth_matches_union_of_spheres(start, end, radii):
    depth, normal = rasterize_capsules(np.array([start]), np.array([end]), np.array([radii]), 64)
    covered = np.argwhere(np.isfinite(depth))
    assert len(covered) > 50
    for i, j in covered[:: max(1, len(covered) // 60)]:
        expected = _union_of_spheres_depth(start, end, *radii, j + 0.5, i + 0.5)
        assert depth[i, j] == pytest.approx(expected, abs=0.05)
    assert np.allclose(np.linalg.norm(normal[np.isfinite(depth)], axis=-1), 1, atol=1e-4)
    # Pixels farther than the largest radius from the segment stay background.
    assert np.isinf(depth[0, 63]) and np.isinf(depth[63, 0])


def test_nearer_sphere_occludes_and_order_swaps_with_z():
    centres = np.array([[24.0, 32.0, 0.0], [40.0, 32.0, 30.0]])
    radius = np.array([12.0, 12.0])
    depth, normal = rasterize_capsules(centres, centres, radius, 64)
    overlap = (31, 32)  # pixel centre x = 32.5: right of sphere A's centre, left of B's
    assert depth[overlap] == pytest.approx(0.0 - np.sqrt(12**2 - 8.5**2 - 0.5**2), abs=1e-3)
    assert normal[overlap][0] > 0  # sphere A's surface faces right there
    swapped = centres.copy()
    swapped[:, 2] = swapped[::-1, 2]
    depth_2, normal_2 = rasterize_capsules(swapped, swapped, radius, 64)
    assert depth_2[overlap] == pytest.approx(0.0 - np.sqrt(12**2 - 7.5**2 - 0.5**2), abs=1e-3)
    assert normal_2[overlap][0] < 0  # now sphere B (facing left there) is in front


def test_sphere_normal_faces_camera_and_brightness_falls_to_rim():
    centre = np.array([[32.0, 32.0, 100.0]])
    depth, normal = rasterize_capsules(centre, centre, np.array([20.0]), 64)
    assert normal[31, 31] == pytest.approx([-0.025, -0.025, -0.999], abs=0.01)
    image = shade(depth, normal)
    bright = _brightness(image)
    assert (image[np.isinf(depth)] == 0).all()
    # Along the direction away from the light (down-right) brightness falls to the rim.
    diagonal = np.array([bright[31 + k, 31 + k] for k in range(14)])
    assert (np.diff(diagonal) < 0).all()
    rim = [bright[31, 31 + 18], bright[31, 31 - 18], bright[31 + 18, 31], bright[31 - 18, 31]]
    assert bright[31, 31] > max(rim)


def _uv_sphere(centre, radius, rings=24, segments=48) -> tuple[np.ndarray, np.ndarray]:
    """Closed sphere mesh with outward winding in the x right, y down, z away frame."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    vertices = np.concatenate([[[0, -1, 0]], ring, [[0, 1, 0]]]) * radius + centre
    faces = []
    last = len(vertices) - 1
    for k in range(segments):
        nxt = (k + 1) % segments
        faces.append((0, 1 + nxt, 1 + k))
        base = 1 + (rings - 2) * segments
        faces.append((last, base + k, base + nxt))
        for r in range(rings - 2):
            a, b = 1 + r * segments + k, 1 + r * segments + nxt
            faces += [(a, b, b + segments), (a, b + segments, a + segments)]
    faces = np.array(faces)
    tri = vertices[faces]
    outward = np.einsum(
        "ij,ij->i", np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), tri.mean(1) - centre
    )
    faces[outward < 0] = faces[outward < 0][:, ::-1]
    return vertices.astype(np.float32), faces


def test_mesh_rasterizer_is_watertight_and_matches_the_analytic_sphere():
    centre = np.array([32.0, 32.0, 50.0])
    vertices, faces = _uv_sphere(centre, 20.0)
    depth, normal = rasterize_mesh(vertices, faces, 64)
    yy, xx = np.mgrid[:64, :64] + 0.5
    dist = np.hypot(xx - 32, yy - 32)
    assert np.isfinite(depth[dist < 19.0]).all()  # no cracks between triangles
    assert np.isinf(depth[dist > 20.5]).all()
    assert depth[31, 31] == pytest.approx(50.0 - 20.0, abs=0.3)
    assert normal[31, 31][2] < -0.99  # outward normal faces the camera
    # Shaded like the analytic sphere of the capsule rasteriser (tessellation aside).
    mesh_image = render_mesh_frame(vertices, faces, 64).astype(np.float32)
    sphere = centre[None]
    exact_image = shade(*rasterize_capsules(sphere, sphere, np.array([20.0]), 64))
    inner = dist < 18
    assert np.abs(mesh_image[inner] - exact_image[inner]).mean() < 3.0


def test_mesh_depth_interpolates_a_tilted_plane():
    vertices = np.array([[4, 4, 10], [60, 4, 10], [4, 60, 66], [60, 60, 66]], np.float32)
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    depth, normal = rasterize_mesh(vertices, faces, (64, 64))
    yy = np.arange(64) + 0.5
    rows = np.isfinite(depth[:, 32])
    assert rows.sum() == 56
    assert np.allclose(depth[rows, 32], 10 + (yy[rows] - 4), atol=1e-3)
    expected = np.array([0, -1, 1]) / np.sqrt(2)  # cross((56, 0, 0), (0, 56, 56)), normalised
    assert np.allclose(normal[rows, 32], expected, atol=1e-5)


def test_mesh_and_capsule_input_errors():
    with pytest.raises(InputError, match="faces index"):
        rasterize_mesh(np.zeros((3, 3)), np.array([[0, 1, 3]]), 16)
    with pytest.raises(InputError, match=r"\(V, 3\)"):
        rasterize_mesh(np.zeros((3, 2)), np.array([[0, 1, 2]]), 16)
    with pytest.raises(InputError, match="capsules need"):
        rasterize_capsules(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(3), 16)
    with pytest.raises(InputError, match="positive"):
        rasterize_capsules(np.zeros((1, 3)), np.zeros((1, 3)), np.ones(1), 0)


# --------------------------------------------------------------------------- landmark frames


def test_empty_frame_is_black():
    empty = {"pose": None, "face": None, "left_hand": None, "right_hand": None}
    image = render_frame(empty, 48)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert not image.any()
    assert not render_frame({}, 32).any()


def test_person_frame_covers_the_body_and_nothing_far_away():
    frame, visibility = synthetic_frame(256)
    image = render_frame(frame, 256, visibility=visibility)
    lit = _brightness(image) > 0
    assert lit[95:200, 100:156].all()  # torso
    assert lit[78:95, 120:136].all()  # neck
    assert lit[40:80, 112:144].all()  # head
    assert lit[60, 128] and lit[150, 128]  # face and chest
    assert lit[200, 184] and lit[215, 72]  # hands
    assert not lit[:, :50].any() and not lit[:, 210:].any() and not lit[:25].any()
    # Legs are seen with visibility 0.1 only: not drawn below the hips' reach.
    assert not lit[245:, 96:112].any()
    visible_legs = render_frame(frame, 256, visibility=np.ones(33, np.float32))
    assert (_brightness(visible_legs)[245:, 96:112] > 0).any()


def test_mouth_cavity_is_darker_than_the_skin_around_it():
    frame, visibility = synthetic_frame(256)
    face = frame["face"]
    image = _brightness(render_frame(frame, 256, visibility=visibility))
    mouth_centres = face[face_triangles()[face_mouth_mask()]].mean(1)  # (18, 3)
    j, i = np.round(mouth_centres[:, :2] - 0.5).astype(int).T
    skin_centres = face[face_triangles()[~face_mouth_mask()]].mean(1)
    sj, si = np.round(skin_centres[:, :2] - 0.5).astype(int).T
    assert np.median(image[i, j]) < 0.5 * np.median(image[si, sj])


def test_render_is_deterministic_and_thread_independent():
    frame, visibility = synthetic_frame(128)
    first = render_frame(frame, 128, visibility=visibility)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        second = render_frame(frame, 128, visibility=visibility)
    finally:
        torch.set_num_threads(threads)
    assert first.tobytes() == second.tobytes()
    assert torch.get_num_threads() == threads  # the renderer restores the thread count


def test_render_frame_rejects_bad_shapes():
    with pytest.raises(InputError, match="pose landmarks"):
        render_frame({"pose": np.zeros((20, 3))}, 32)
    with pytest.raises(InputError, match="visibility"):
        render_frame({"pose": np.zeros((33, 3))}, 32, visibility=np.ones(5))


def test_missing_points_are_skipped():
    frame, visibility = synthetic_frame(128)
    frame["right_hand"] = frame["right_hand"].copy()
    frame["right_hand"][8:] = np.nan
    frame["face"] = frame["face"].copy()
    frame["face"][:100] = np.nan
    image = render_frame(frame, 128, visibility=visibility)
    assert image.any()


def test_render_sequence_scales_to_the_output_size():
    frame, visibility = synthetic_frame(256)
    seq = LandmarkSequence.empty(3, 25.0, (256, 256))
    for t in (0, 2):  # frame 1 is empty
        for part, points in frame.items():
            getattr(seq, part)[t] = points
            seq.present[part][t] = True
        seq.pose_visibility[t] = visibility
    images = list(render_sequence(seq, 128))
    assert len(images) == 3 and all(im.shape == (128, 128, 3) for im in images)
    assert not images[1].any()
    half = {part: points / 2 for part, points in frame.items()}
    assert images[0].tobytes() == render_frame(half, 128, visibility=visibility).tobytes()
    full = next(render_sequence(seq))
    assert full.shape == (256, 256, 3)
    with pytest.raises(InputError, match="square"):
        next(render_sequence(LandmarkSequence.empty(1, 25.0, (320, 240))))


def test_extra_mesh_shares_the_z_buffer():
    frame, visibility = synthetic_frame(128)
    vertices, faces = _uv_sphere(np.array([64.0, 75.0, -200.0]), 10.0)  # in front of the chest
    alone = render_frame(frame, 128, visibility=visibility)
    with_mesh = render_frame(frame, 128, visibility=visibility, mesh=(vertices, faces))
    assert not np.array_equal(alone[75, 64], with_mesh[75, 64])
    assert np.array_equal(with_mesh[75, 64], render_mesh_frame(vertices, faces, 128)[75, 64])


def test_full_frame_renders_fast():
    frame, visibility = synthetic_frame(256)
    render_frame(frame, 256, visibility=visibility)  # warm-up (face mesh cache)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        render_frame(frame, 256, visibility=visibility)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.5


@pytest.mark.slow
def test_astronaut_photo_renders_a_shaded_person(astronaut_holistic):
    """MediaPipe Holistic on scikit-image's astronaut photo, rendered at its own size."""
    pose, face = (part.copy() for part in astronaut_holistic)
    face[:, 2] += pose[0, 2] - face[1, 2]  # face depth relative to the pose's nose
    image = render_frame({"pose": pose, "face": face}, 512)
    bright = _brightness(image)
    x0, y0 = face[:468, :2].min(0).astype(int)
    x1, y1 = face[:468, :2].max(0).astype(int)
    face_box = bright[y0:y1, x0:x1]
    assert (face_box > 0).mean() > 0.9
    # The face mesh faces the camera: lit well above the ambient level on average.
    assert face_box[face_box > 0].mean() > 0.6 * 3 * 255 * max(render.SURFACE_COLOR)
    assert (bright[260:400, 150:300] > 0).mean() > 0.9  # chest
    assert not bright[:40, 420:].any()  # the rocket corner stays black


def test_committed_face_mesh_table_matches_mediapipe():
    """The table rendering reads (so it needs no MediaPipe) equals a fresh derivation."""
    pytest.importorskip("mediapipe", reason="mediapipe not installed: cannot re-derive the mesh")
    from anchorgen.prepare.render import derive_face_mesh

    faces, mouth = derive_face_mesh()
    assert np.array_equal(faces, face_triangles()) and np.array_equal(mouth, face_mouth_mask())
