"""Specifications kept by the ``prepare`` speed work: same renders, same mattes, shared workers."""

from __future__ import annotations

import hashlib
import os

import cv2
import numpy as np
import pytest
import torch

from anchorgen.parallel import run_segments, segment_pool
from anchorgen.prepare.crop import CropBox, apply_crop, crop_matte
from anchorgen.prepare.render import render_frame
from test_render import synthetic_frame

REFERENCE_RENDER_SHA256 = "51a325a792918fc9126312e13ae3b61ad021c0739042a30344f9e3232cc985d4"
"""sha256 of the synthetic person rendered at 256 px by the renderer before the speed work
(main at cde602a). Renders must be reproducible from saved landmarks, so a faster renderer
has to draw the same bytes; change this only with a deliberate change of the render look."""


def _count_capsule_candidates(monkeypatch) -> list:
    """A list that receives each capsule draw's candidate-pixel count while the test runs."""
    from anchorgen.prepare import render

    counted = []
    original = render._CapsuleFragments.draw

    def counting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        counted.append(self.candidates)

    monkeypatch.setattr(render._CapsuleFragments, "draw", counting)
    return counted


def test_renderer_draws_the_same_bytes_as_before():
    frame, visibility = synthetic_frame(256)
    image = render_frame(frame, 256, visibility=visibility)
    assert hashlib.sha256(image.tobytes()).hexdigest() == REFERENCE_RENDER_SHA256


def _soft_person_matte(width: int = 1080, height: int = 1920) -> np.ndarray:
    matte = np.zeros((height, width), np.float32)
    cv2.ellipse(
        matte, (width // 2, height * 4 // 7), (width * 7 // 20, height * 3 // 8), 0, 0, 360, 1.0, -1
    )
    return cv2.GaussianBlur(matte, (0, 0), 2)


def test_matte_crop_from_the_small_matte_matches_the_full_resolution_crop():
    """One warp from the down-scaled matte equals up-scaling it to the frame and cropping
    that, to within interpolation error, for crops inside and across the frame edges."""
    matte = _soft_person_matte()
    small = (cv2.resize(matte, (360, 640), interpolation=cv2.INTER_AREA) * 255).round()
    small = small.astype(np.uint8)
    full = cv2.resize(small, (1080, 1920), interpolation=cv2.INTER_LINEAR)[..., None]
    for box in (CropBox(-414, 0, 1920), CropBox(100, 300, 900), CropBox(-50, -20, 700)):
        expected = apply_crop(full, box, 512, pad_mode="edge")[..., 0].astype(int)
        got = crop_matte(small, box, (1080, 1920), 512).astype(int)
        assert got.shape == (512, 512)
        assert np.abs(got - expected).mean() < 0.2, box
        assert np.abs(got - expected).max() <= 16, box


def test_matte_crop_is_not_shifted():
    """A matte whose left half is on: the edge lands where the box puts it (1 px at 512)."""
    small = np.zeros((640, 360), np.uint8)
    small[:, :180] = 255
    box = CropBox(40, 200, 1000)
    crop = crop_matte(small, box, (1080, 1920), 500)  # 2 source px per crop px
    edge = (540 - box.x0) / 2  # the source edge x = 540 in crop pixels
    row = crop[250].astype(float) / 255
    assert abs(row.sum() - edge) < 1.0


def _pid_and_square(job, report):
    report(1)
    return os.getpid(), job[0] ** 2


def test_passes_share_one_pool_of_worker_processes():
    with segment_pool(2) as pool:
        first = run_segments(_pid_and_square, [(2,), (3,)], 2, "a", False, pool)
        second = run_segments(_pid_and_square, [(4,), (5,)], 2, "b", False, pool)
    assert [r[1] for r in first + second] == [4, 9, 16, 25]
    workers = {r[0] for r in first + second}
    assert os.getpid() not in workers and len(workers) <= 2  # no new processes per pass
    with segment_pool(1) as none:
        assert none is None
        assert run_segments(_pid_and_square, [(6,)], 1, "c", False, none) == [(os.getpid(), 36)]


def _crop_by_padding_the_frame(frame, box, out_size):
    """The plain reference: pad the whole frame by repeating its edges, cut, area-resize."""
    left, top, right, bottom = box.padding((frame.shape[1], frame.shape[0]))
    padded = cv2.copyMakeBorder(frame, top, bottom, left, right, cv2.BORDER_REPLICATE)
    region = padded[box.y0 + top :][: box.side, box.x0 + left :][:, : box.side]
    return cv2.resize(
        np.ascontiguousarray(region), (out_size, out_size), interpolation=cv2.INTER_AREA
    )


def test_edge_padded_crop_resizes_without_padding_the_frame_to_the_same_bytes():
    """Crops that leave a portrait frame sideways (the crop skips resizing copies of the
    edge columns) equal padding the frame and resizing it, byte for byte: boxes across one
    or both side borders, also with rows above or below the frame, block sizes of 1 to 25
    columns, grey and colour frames."""
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (480, 270, 3), dtype=np.uint8)
    frame[:, :9] = rng.integers(0, 256, (480, 1, 3), dtype=np.uint8)  # flat edge, as in video
    boxes = [
        (CropBox(-105, 0, 480), 128),  # both sides, 15-column blocks (1920 -> 512 in small)
        (CropBox(-200, 0, 480), 128),  # mostly the left side
        (CropBox(-3, 10, 400), 128),  # a sliver on the left, within one block
        (CropBox(100, -40, 400), 64),  # right side and rows above: padded strips
        (CropBox(-150, -60, 600), 128),  # left, right, above and below
        (CropBox(-210, 0, 800), 100),  # blocks of 8 columns
        (CropBox(-30, 0, 300), 150),  # integer scale: blocks of 2 columns
        (CropBox(-45, 0, 1000), 64),  # 125-column blocks, the left one across the border
    ]
    for box, out_size in boxes:
        for image in (frame, frame[..., 1]):
            got = apply_crop(image, box, out_size, pad_mode="edge")
            expected = _crop_by_padding_the_frame(image, box, out_size)
            assert got.shape == (out_size, out_size, *image.shape[2:]), box
            assert np.array_equal(got, expected.reshape(got.shape)), (box, out_size, image.ndim)


def test_skipping_capsule_pixels_behind_meshes_leaves_the_image_unchanged(monkeypatch):
    """Capsules crossing a mesh plane at many depths (just in front of it, through it, just
    behind it, far behind it) render the same with the occlusion skip as without it, and
    the skip does remove candidate pixels."""
    from anchorgen.prepare import render

    rng = np.random.default_rng(3)
    size = 96
    plane = np.array([[8, 8, 40], [88, 8, 40], [88, 88, 44], [8, 88, 44]], np.float32)
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    scenes = []
    for _ in range(12):
        scene = render._Scene()
        scene.mesh(plane + rng.normal(0, 1, plane.shape).astype(np.float32), quad)
        for _ in range(8):
            start = rng.uniform((0, 0, 20), (size, size, 60))
            end = start + rng.normal(0, 15, 3)
            scene.capsule(start, end, rng.uniform(2, 12), rng.uniform(2, 12))
        scene.sphere(
            np.array([48.0, 48.0, 42 + rng.uniform(-1, 1) + 10]), 10.0 + rng.uniform(-0.2, 0.2)
        )
        scenes.append(scene)

    seen = _count_capsule_candidates(monkeypatch)
    with render._one_thread():
        culled = [scene.render(size, size, render.SURFACE_COLOR) for scene in scenes]
        monkeypatch.setattr(render, "_OCCLUSION_MARGIN", (np.inf, 0.0))  # skips nothing
        plain = [scene.render(size, size, render.SURFACE_COLOR) for scene in scenes]
    for with_skip, without in zip(culled, plain, strict=True):
        assert np.array_equal(with_skip, without)
    assert sum(seen[: len(scenes)]) < sum(seen[len(scenes) :])  # fewer capsule rays solved


def test_matte_size_keeps_the_aspect_and_never_enlarges():
    from anchorgen.prepare.holistic import matte_size

    assert matte_size((1080, 1920), 640) == (360, 640)
    assert matte_size((1920, 1080), 640) == (640, 360)
    assert matte_size((1000, 333), 640) == (640, 213)
    assert matte_size((320, 240), 640) == (320, 240)
    assert matte_size((1080, 1920), None) == (1080, 1920)


def test_mattes_come_at_the_requested_size():
    """The selfie-segmentation matte of a real photo, at half its size: the person is in it."""
    from skimage import data

    from anchorgen.prepare.holistic import track_frames

    photo = data.astronaut()  # (512, 512, 3) one person, head and torso
    mattes = {}
    seq = track_frames(
        [photo] * 2,
        25.0,
        (512, 512),
        on_matte=mattes.__setitem__,
        progress=False,
        matte_max_side=256,
    )
    assert sorted(mattes) == [0, 1]
    matte = mattes[1]
    assert matte.shape == (256, 256) and matte.dtype == np.float32
    assert 0 <= matte.min() and matte.max() <= 1
    nose = seq.pose[1, 0, :2] / 2  # pose in photo pixels, matte at half size
    assert matte[int(nose[1]), int(nose[0])] > 0.5
    assert matte[2:20, 240:].mean() < 0.5  # top-right background


def _bounding_box_candidates(a, b, ra, rb, height, width):
    """Every pixel of each capsule's bounding box: a loose superset of its silhouette."""
    from anchorgen.prepare import render

    radius = torch.maximum(ra, rb)
    lo = torch.minimum(a[:, 1], b[:, 1]) - radius
    hi = torch.maximum(a[:, 1], b[:, 1]) + radius
    left = torch.minimum(a[:, 0], b[:, 0]).double() - radius
    right = torch.maximum(a[:, 0], b[:, 0]).double() + radius

    def span(owner, _yc):
        return left.index_select(0, owner), right.index_select(0, owner)

    yield from render._span_fragments(lo, hi, span, height, width)


def test_capsule_silhouette_spans_keep_every_pixel_the_ray_hits(monkeypatch):
    """Renders from the tight silhouette spans (hull of the two end discs) equal renders from
    whole bounding boxes, for long, tapered, end-on, one-sphere-inside-the-other capsules
    and plain spheres, with depth ties between capsules; and the spans are tighter."""
    from anchorgen.prepare import render

    rng = np.random.default_rng(7)
    size = 80
    cones = []
    for _ in range(60):
        start = rng.uniform((0, 0, 10), (size, size, 60))
        kind = rng.integers(4)
        if kind == 0:  # long, in the image plane or tilted
            end = start + rng.normal(0, 25, 3)
        elif kind == 1:  # nearly along the view: a disc seen end-on
            end = start + np.array([*rng.normal(0, 0.5, 2), rng.uniform(-30, 30)])
        elif kind == 2:  # a sphere
            end = start
        else:  # short with very different radii: one end sphere holds the other
            end = start + rng.normal(0, 3, 3)
        cones.append((*start, *end, *rng.uniform(1, 14, 2)))
    cones.append(cones[-1])  # an exact duplicate: every pixel a depth tie
    cones = np.array(cones)
    counted = _count_capsule_candidates(monkeypatch)
    with render._one_thread():
        tight = render._rasterize([], cones, size, size + 7)
        monkeypatch.setattr(render, "_capsule_silhouettes", _bounding_box_candidates)
        loose = render._rasterize([], cones, size, size + 7)
    for got, expected in zip(tight, loose, strict=True):
        order, expected_order = torch.argsort(tight[0]), torch.argsort(loose[0])
        assert torch.equal(got[order], expected[expected_order])
    assert counted[0] < 0.8 * counted[1]


def test_z_buffer_keys_order_depths_and_break_ties_by_listing():
    """Keys sort like the depths (negative, zero of either sign, positive, inf); at equal
    depth the fragment listed last wins, and meshes win against capsules."""
    from anchorgen.prepare import render

    depth = torch.tensor([-1e30, -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, 2.0000002, 1e30, torch.inf])
    bits = render._ordered_bits(depth)
    assert torch.all(bits[1:] >= bits[:-1]) and bits[3] == bits[4]
    assert torch.all((bits[1:] > bits[:-1])[torch.arange(len(depth) - 1) != 3])
    assert torch.equal(render._depth_from_bits(bits), depth + 0.0)

    zbuffer = render._ZBuffer(4)
    pixel = torch.tensor([0, 0, 1, 1, 2])
    zbuffer.add(pixel, torch.tensor([5.0, 5.0, -2.0, -3.0, torch.inf]), render._MESH_RANKS - 1)
    zbuffer.add(torch.tensor([0, 3]), torch.tensor([5.0, 1.0]), (1 << 32) - 2)  # capsules
    covered, nearest, rank = zbuffer.winners()
    assert covered.tolist() == [0, 1, 3]  # pixel 2 only had a miss (inf)
    assert nearest.tolist() == [5.0, -3.0, 1.0]
    # pixel 0: the second mesh fragment (rank MESH - 2) beats the first and the capsule
    assert rank.tolist() == [render._MESH_RANKS - 2, render._MESH_RANKS - 4, (1 << 32) - 3]


def _write_numbered_video(path, count, fps=25, keyframe_every=25, size=(32, 48)):
    """H.264 with a keyframe exactly every ``keyframe_every`` frames; frame i has red
    8 * (i % 32) and green 8 * (i // 32)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        stream.options = {
            "crf": "0",
            "x264-params": f"keyint={keyframe_every}:min-keyint={keyframe_every}:scenecut=0",
        }
        for i in range(count):
            image = np.zeros((*size, 3), np.uint8)
            image[..., 0], image[..., 1] = 8 * (i % 32), 8 * (i // 32)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_segments_decode_from_the_keyframe_before_their_start(tmp_path):
    """A segment starting just after a keyframe decodes from that keyframe, not from the
    one before (a second earlier), and yields the same frames as decoding from frame 0."""
    import av

    from anchorgen.io import video as video_io

    path = tmp_path / "numbered.mp4"
    _write_numbered_video(path, 100)
    everything = list(video_io.iter_frames(path, 25.0))
    assert len(everything) == 100
    for start, end in ((1.04, 3.0), (2.0, 2.5), (2.52, 4.0), (3.96, 4.0)):
        frames = list(video_io.iter_frames(path, 25.0, start, end))
        first = round(start * 25)
        assert len(frames) == int(np.floor((end - start) * 25 - 1e-9)) + 1  # times < end
        for got, expected in zip(frames, everything[first:], strict=False):
            assert np.array_equal(got, expected)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first_decoded = next(video_io._seek(container, stream, 2.52, 0.0))
        assert float(first_decoded.pts * first_decoded.time_base) == pytest.approx(2.0)


def test_renders_do_not_depend_on_the_chunk_size(monkeypatch):
    """Rasterising in many small chunks (fragment ranks and rows numbered across chunks)
    draws the same bytes as in one chunk, at the body and at the face scale."""
    from anchorgen.prepare import render

    frame, visibility = synthetic_frame(160)
    face_space = {
        part: None if points is None else points * np.float32(2.5) - np.float32((120, 60, 0))
        for part, points in frame.items()
    }
    whole = [render_frame(f, 160, visibility=visibility) for f in (frame, face_space)]
    monkeypatch.setattr(render, "_CHUNK_FRAGMENTS", 97)
    chunked = [render_frame(f, 160, visibility=visibility) for f in (frame, face_space)]
    for one, many in zip(whole, chunked, strict=True):
        assert one.any() and np.array_equal(one, many)


_MAIN_PROCESS_CHECK = """
import sys
from anchorgen.prepare.pipeline import PrepareConfig, prepare
from anchorgen.prepare.sample import write_sample_clip

clip = write_sample_clip(sys.argv[1] + "/clip.mp4", seconds=4.0, fps=8, size=256)
config = PrepareConfig(size=128, face_size=128, fps=8, holdout_seconds=1.0, workers=2)
prepare(clip, sys.argv[1] + "/out", config, progress=False)
print(sorted(m for m in ("torch", "mediapipe") if m in sys.modules))
"""


def test_main_process_prepares_without_torch_or_mediapipe(tmp_path):
    """The workers track and render; the main process (smoothing, crop, dataset files) needs
    neither library, so it leaves their import time (seconds of CPU) to the workers."""
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", _MAIN_PROCESS_CHECK, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "meta.json").is_file()


def test_dataset_module_shares_the_torch_free_layout_helpers():
    """One home for the file names, image codecs and meta.json: the reader re-exports them."""
    from anchorgen.io import dataset, layout

    for name in ("SCHEMA_VERSION", "JPEG_QUALITY", "DatasetMeta", "frame_name"):
        assert getattr(dataset, name) is getattr(layout, name)
    assert dataset.write_image is layout.write_image and dataset.read_image is layout.read_image
