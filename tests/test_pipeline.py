"""AnchorPipeline (Algorithm 1) and FacePipeline (Algorithm 2) on tiny models, CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anchorgen.errors import InputError
from anchorgen.models import tiny_test_model
from anchorgen.pipelines.anchor import AnchorPipeline, ArrayFrames, spool_frames, step_sequence
from anchorgen.pipelines.windows import accumulate_windows, window_schedule

SIZE = 16  # pixels; with the tiny models every test takes seconds
SHORT = {"window_size": 4, "window_overlap": 2}  # several windows on a short clip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models are dominated by per-op overhead; one thread avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def video_model():
    return tiny_test_model(temporal=True, seed=0)


@pytest.fixture(scope="module")
def image_model():
    return tiny_test_model(temporal=False, seed=1)


def conditions(length: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(length, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def reference() -> torch.Tensor:
    return torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(99))


def latent_noise(model, length: int, seed: int) -> torch.Tensor:
    factor = model.codec.factor
    shape = (length, model.codec.latent_channels, SIZE // factor, SIZE // factor)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def run(model, length: int, seed: int = 0, **kwargs):
    kwargs = {"num_inference_steps": 2, "progress": False, "output_type": "pt", **kwargs}
    pipe = AnchorPipeline(model, kwargs.pop("scheduler", None))
    return pipe(
        reference(), conditions(length), generator=torch.Generator().manual_seed(seed), **kwargs
    ).frames


class RecordingFrames(ArrayFrames):
    """Condition source that records every slice the pipeline asks for."""

    def __init__(self, frames):
        super().__init__(frames)
        self.requests: list[tuple[int, int]] = []

    def __getitem__(self, index: slice) -> torch.Tensor:
        self.requests.append((index.start, index.stop))
        return super().__getitem__(index)


def test_deterministic_with_seed(video_model):
    first = run(video_model, 6, seed=3, **SHORT)
    assert torch.equal(first, run(video_model, 6, seed=3, **SHORT))
    assert not torch.equal(first, run(video_model, 6, seed=4, **SHORT))


@pytest.mark.parametrize("length", [1, 16, 17, 301])
def test_lengths_run(video_model, length):
    # ws 16 / os 4 as in the paper; 301 frames = 25 windows in one forward per step, no CFG.
    kwargs = {"guidance_scale": 1.0, "windows_per_batch": 25} if length == 301 else {}
    frames = run(video_model, length, decode_batch_size=128, **kwargs)
    assert frames.shape == (length, 3, SIZE, SIZE)
    assert torch.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1


def reference_algorithm_1(model, noise, cond, ref, steps, guidance, scale, ws, os):
    """Algorithm 1 written out plainly: one window per forward, CFG as two forwards."""
    scheduler = model.make_scheduler("ddim")
    tokens = model.encode_appearance(ref[None] * 2 - 1)
    null = model.null_tokens(1)
    scheduler.set_timesteps(steps)
    latents = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        predictions = []
        for start, stop in window_schedule(len(cond), ws, os):
            x = scheduler.scale_model_input(latents[None, start:stop], t)
            c = cond[None, start:stop]
            with torch.no_grad():
                conditional = model.predict(x, t[None], c, tokens, conditioning_scale=scale)
                unconditional = model.predict(x, t[None], c, null, conditioning_scale=scale)
            guided = unconditional + guidance * (conditional - unconditional)
            predictions.append((start, stop, guided))
        noise_pred = accumulate_windows(predictions, len(cond))[0]
        latents = scheduler.step(noise_pred, t, latents).prev_sample
    with torch.no_grad():
        return ((model.codec.decode(latents) + 1) / 2).clamp(0, 1)


@pytest.mark.parametrize(
    ("length", "window_size", "windows_per_batch"), [(4, 16, 1), (10, 4, 1), (10, 4, 3)]
)
def test_pipeline_matches_plain_algorithm_1(video_model, length, window_size, windows_per_batch):
    """One window: the plain video model on the whole clip; several: the overlap average."""
    noise = latent_noise(video_model, length, seed=5)
    expected = reference_algorithm_1(
        video_model, noise, conditions(length), reference(), 2, 3.5, 2.0, window_size, 2
    )
    frames = run(
        video_model,
        length,
        latents=noise,
        window_size=window_size,
        window_overlap=2,
        windows_per_batch=windows_per_batch,
    )
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=1e-5)


def test_static_batch_shapes_pad_the_last_batch_and_change_nothing(video_model, monkeypatch):
    """What a compiled model needs: every forward of one shape, the frames unchanged."""
    noise = latent_noise(video_model, 10, seed=3)
    kwargs = {"latents": noise, "window_size": 4, "window_overlap": 2, "windows_per_batch": 3}
    expected = run(video_model, 10, **kwargs)  # windows 0-4, 2-6, 4-8, 6-10: batches 3 + 1
    batch_sizes = []
    predict = video_model.predict

    def recording(noisy, *args, **kw):
        batch_sizes.append(noisy.shape[0])
        return predict(noisy, *args, **kw)

    monkeypatch.setattr(video_model, "predict", recording)
    monkeypatch.setattr(video_model, "static_batch_shapes", True)
    frames = run(video_model, 10, **kwargs)
    assert set(batch_sizes) == {6}  # 3 windows, CFG halves folded in
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=1e-5)


def test_chunked_ddim_step_equals_whole_sequence_step(video_model):
    scheduler = video_model.make_scheduler("ddim")
    scheduler.set_timesteps(4)
    t = scheduler.timesteps[1]
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(10, 3, 2, 2, generator=generator)
    noise_sum = torch.randn(10, 3, 2, 2, generator=generator)
    count = torch.tensor([1.0, 2, 2, 1, 1, 3, 1, 1, 2, 1])
    whole = scheduler.step(noise_sum / count[:, None, None, None], t, latents).prev_sample
    chunked = step_sequence(scheduler, noise_sum, count, t, latents.clone(), chunk=3)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)


def test_dpm_solver_scheduler_runs(video_model):
    frames = run(video_model, 6, scheduler=video_model.make_scheduler("dpm++"), **SHORT)
    assert frames.shape == (6, 3, SIZE, SIZE)
    assert not torch.equal(frames, run(video_model, 6, **SHORT))


def test_frame_wise_ablation_treats_frames_independently(image_model):
    length = 7
    noise = latent_noise(image_model, length, seed=2)
    together = run(image_model, length, temporal=False, latents=noise)
    assert together.shape == (length, 3, SIZE, SIZE)
    pipe = AnchorPipeline(image_model)
    alone = pipe(
        reference(),
        conditions(length)[3:4],
        num_inference_steps=2,
        latents=noise[3:4],
        output_type="pt",
        progress=False,
        temporal=False,
    ).frames
    torch.testing.assert_close(together[3:4], alone, atol=1e-5, rtol=1e-5)


def test_window_longer_than_temporal_layers_is_refused(video_model):
    longest = video_model.config.motion_max_seq_length
    with pytest.raises(InputError, match="window_size"):
        run(video_model, longest + 8, window_size=longest + 1)


def test_conditions_are_read_lazily_window_by_window(video_model):
    source = RecordingFrames(conditions(10))
    AnchorPipeline(video_model)(
        reference(), source, num_inference_steps=2, progress=False, guidance_scale=1.0, **SHORT
    )
    assert max(stop - start for start, stop in source.requests) <= 4


def test_uint8_memmap_conditions(video_model, tmp_path):
    frames = (conditions(5).movedim(1, -1) * 255).round().to(torch.uint8).numpy()
    stored = np.lib.format.open_memmap(
        tmp_path / "c.npy", mode="w+", dtype=np.uint8, shape=frames.shape
    )
    stored[:] = frames
    out = AnchorPipeline(video_model)(reference(), stored, num_inference_steps=2, progress=False)
    assert out.frames.shape == (5, SIZE, SIZE, 3) and out.frames.dtype == np.float32


def test_generate_frames_streams_chunk_by_chunk(video_model, monkeypatch):
    length, chunk = 12, 4
    decoded_chunks = []
    decode = video_model.codec.decode

    def counting_decode(latents):
        decoded_chunks.append(latents.shape[0])
        return decode(latents)

    monkeypatch.setattr(video_model.codec, "decode", counting_decode)
    pipe = AnchorPipeline(video_model)
    stream = pipe.generate_frames(
        reference(),
        conditions(length),
        num_inference_steps=2,
        progress=False,
        generator=torch.Generator().manual_seed(0),
        decode_batch_size=chunk,
        **SHORT,
    )
    first = next(stream)
    assert first.dtype == np.uint8 and first.shape == (SIZE, SIZE, 3)
    assert decoded_chunks == [chunk], "only the first chunk is decoded before the first frame"
    rest = list(stream)
    assert len(rest) == length - 1
    assert decoded_chunks == [chunk] * (length // chunk)
    whole = run(video_model, length, output_type="np", **SHORT)
    expected = (whole * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(np.stack([first, *rest]), expected)


def test_spool_frames_round_trip(tmp_path):
    frames = [np.full((4, 5, 3), i, np.uint8) for i in range(6)]
    stored = spool_frames(iter(frames), tmp_path / "frames.npy", 6)
    np.testing.assert_array_equal(stored, np.stack(frames))
    with pytest.raises(InputError, match="expected 7"):
        spool_frames(iter(frames), tmp_path / "short.npy", 7)


def test_bad_inputs(video_model):
    pipe = AnchorPipeline(video_model)
    with pytest.raises(InputError, match="empty"):
        pipe(reference(), torch.zeros(0, 3, SIZE, SIZE))
    with pytest.raises(InputError, match="output_type"):
        pipe(reference(), conditions(2), output_type="pil")
    with pytest.raises(InputError, match="latents"):
        pipe(reference(), conditions(2), latents=torch.zeros(3, 1, 1, 1), progress=False)


# --- face enhancement (Algorithm 2) -------------------------------------------------------

FRAME = 32  # body frame size for the face tests
CROP = 16  # aligned face crop size


def synthetic_face_points(shift: float = 0.0) -> np.ndarray:
    """(478, 3) face mesh: an oval around the frame centre with eyes and mouth corners."""
    from anchorgen.prepare.face import FACE_OVAL

    centre = np.array([FRAME / 2 + shift, FRAME / 2])
    points = np.zeros((478, 3))
    points[:, :2] = centre
    angles = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    points[list(FACE_OVAL), 0] = centre[0] + 5 * np.sin(angles)
    points[list(FACE_OVAL), 1] = centre[1] - 7 * np.cos(angles)
    for index, (dx, dy) in {
        33: (-4, -2),
        133: (-2, -2),
        362: (2, -2),
        263: (4, -2),
        61: (-2.5, 3.5),
        291: (2.5, 3.5),
    }.items():
        points[index, :2] = centre + np.array([dx, dy])
    return points


def crop_footprint(affine: np.ndarray, shape: tuple[int, int], margin: int = 2) -> np.ndarray:
    """(H, W) bool: the frame pixels the aligned crop square maps onto, grown by ``margin``."""
    import cv2

    from anchorgen.prepare.face import invert_affine

    corners = np.array([[0, 0], [CROP, 0], [CROP, CROP], [0, CROP]], np.float64)
    inverse = invert_affine(affine)
    polygon = corners @ inverse[:, :2].T + inverse[:, 2]
    footprint = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(footprint, np.round(polygon).astype(np.int32), 1)
    return cv2.dilate(footprint, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0


@pytest.fixture(scope="module")
def face_model():
    return tiny_test_model(temporal=True, inpainting=True, seed=2)


def face_inputs(length: int = 6):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (length, FRAME, FRAME, 3), dtype=np.uint8)
    body_conditions = torch.rand(
        length, 3, FRAME, FRAME, generator=torch.Generator().manual_seed(1)
    )
    points = np.stack([synthetic_face_points(shift=0.5 * i) for i in range(length)])
    points[2] = np.nan  # no face detected in frame 2
    face_reference = rng.integers(0, 256, (CROP, CROP, 3), dtype=np.uint8)
    return frames, face_reference, body_conditions, points


def enhance(face_model, frames, face_reference, body_conditions, points, seed=0, **kwargs):
    from anchorgen.pipelines.face import FacePipeline

    pipe = FacePipeline(face_model)
    kwargs = {
        "num_inference_steps": 2,
        "progress": False,
        "crop_size": CROP,
        "feather_px": 2.0,
        **kwargs,
    }
    stream = pipe.enhance_frames(
        frames,
        face_reference,
        body_conditions,
        points,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )
    return np.stack(list(stream))


def test_face_blending_leaves_outside_pixels_unchanged(face_model):
    from anchorgen.prepare.face import face_align_affine

    frames, face_reference, body_conditions, points = face_inputs()
    out = enhance(
        face_model, frames, face_reference, body_conditions, points, window_size=4, window_overlap=2
    )
    assert out.shape == frames.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[2], frames[2])  # no face: untouched
    for i in (0, 1, 3, 4, 5):
        footprint = crop_footprint(face_align_affine(points[i], CROP), (FRAME, FRAME))
        np.testing.assert_array_equal(out[i][~footprint], frames[i][~footprint])
        assert (out[i][footprint] != frames[i][footprint]).any(), "the face region was enhanced"


def test_face_enhancement_deterministic_and_frame_wise(face_model):
    inputs = face_inputs()
    first = enhance(face_model, *inputs, window_size=4, window_overlap=2)
    np.testing.assert_array_equal(
        first, enhance(face_model, *inputs, window_size=4, window_overlap=2)
    )
    frame_wise = enhance(face_model, *inputs, temporal=False)
    assert frame_wise.shape == first.shape


def test_single_process_face_pass_makes_no_temporary_folder(face_model, monkeypatch):
    import tempfile

    def refused(*args, **kwargs):
        raise AssertionError("a temporary folder was made in a single-process run")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", refused)
    assert enhance(face_model, *face_inputs(length=3)).shape[0] == 3


def test_face_enhancement_reads_memmapped_frames(face_model, tmp_path):
    frames, face_reference, body_conditions, points = face_inputs()
    stored = spool_frames(iter(frames), tmp_path / "body.npy", len(frames))
    np.testing.assert_array_equal(
        enhance(face_model, stored, face_reference, body_conditions, points),
        enhance(face_model, frames, face_reference, body_conditions, points),
    )


def test_face_pipeline_refuses_non_inpainting_model(video_model):
    from anchorgen.pipelines.face import FacePipeline

    with pytest.raises(InputError, match="inpainting"):
        FacePipeline(video_model)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("latents_device", ["cpu", "cuda"])
def test_cuda_matches_cpu(latents_device):
    """Model on the GPU, latent sequence on the host or the GPU: same video as on the CPU."""
    cpu_model = tiny_test_model(temporal=True, seed=0)
    gpu_model = tiny_test_model(temporal=True, seed=0).cuda()
    noise = latent_noise(cpu_model, 10, seed=1)
    kwargs = {"latents": noise, "windows_per_batch": 2, **SHORT}
    expected = run(cpu_model, 10, **kwargs)
    frames = run(gpu_model, 10, latents_device=latents_device, **kwargs)
    assert frames.device.type == "cpu"
    torch.testing.assert_close(frames, expected, atol=2e-3, rtol=0)
    inputs = face_inputs()
    face_cpu = enhance(tiny_test_model(temporal=True, inpainting=True, seed=2), *inputs)
    face_gpu_model = tiny_test_model(temporal=True, inpainting=True, seed=2).cuda()
    face_gpu = enhance(face_gpu_model, *inputs, latents_device=latents_device)
    assert np.abs(face_gpu.astype(int) - face_cpu.astype(int)).max() <= 2


def test_read_only_frames_convert_without_a_warning(monkeypatch):
    import numpy as np
    import torch

    from anchorgen.pipelines.anchor import image_to_unit_tensor

    wrap = torch.from_numpy

    def writable_only(array):  # PyTorch warns (once per process) on a read-only array
        assert array.flags.writeable, "a read-only array reached torch.from_numpy"
        return wrap(array)

    monkeypatch.setattr(torch, "from_numpy", writable_only)
    frames = np.full((2, 4, 4, 3), 255, np.uint8)
    frames.flags.writeable = False  # as a memmap of spooled frames
    tensor = image_to_unit_tensor(frames)
    assert tensor.shape == (2, 3, 4, 4) and float(tensor.min()) == 1.0
    assert not frames.flags.writeable  # the caller's array is left as it was
