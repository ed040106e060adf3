"""AnchorPipeline (Algorithm 1) and FacePipeline (Algorithm 2) on tiny models, CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anchorgen.errors import InputError

try:
    from anchorgen.models import tiny_test_model
except ImportError:  # DEVFAKE
    from fake_sgdm import tiny_test_model
from anchorgen.pipelines.anchor import AnchorPipeline, ArrayFrames, spool_frames
from anchorgen.pipelines.windows import accumulate_windows, window_schedule

SIZE = 16  # pixels; tiny models keep every test at a few seconds


@pytest.fixture(scope="module")
def video_model():
    torch.manual_seed(0)
    return tiny_test_model(temporal=True).eval()


@pytest.fixture(scope="module")
def image_model():
    torch.manual_seed(1)
    return tiny_test_model(temporal=False).eval()


def conditions(length: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(length, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def reference() -> torch.Tensor:
    return torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(99))


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
    first = run(video_model, 20, seed=3)
    assert torch.equal(first, run(video_model, 20, seed=3))
    assert not torch.equal(first, run(video_model, 20, seed=4))


@pytest.mark.parametrize("length", [1, 16, 17, 301])
def test_lengths_run(video_model, length):
    frames = run(video_model, length, windows_per_batch=8, decode_batch_size=64)
    assert frames.shape == (length, 3, SIZE, SIZE)
    assert torch.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1


def reference_algorithm_1(model, scheduler, noise, cond, ref, steps, guidance, scale, ws, os):
    """Algorithm 1 written out plainly, one window per forward, CFG as two forwards."""
    tokens = model.encode_appearance(ref[None] * 2 - 1)
    null = model.null_tokens(1) if hasattr(model, "null_tokens") else torch.zeros_like(tokens)
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
            predictions.append(
                (start, stop, unconditional + guidance * (conditional - unconditional))
            )
        latents = scheduler.step(
            accumulate_windows(predictions, len(cond))[0], t, latents
        ).prev_sample
    with torch.no_grad():
        return (model.codec.decode(latents) + 1) / 2


@pytest.mark.parametrize(("length", "windows_per_batch"), [(12, 1), (40, 1), (40, 2)])
def test_pipeline_matches_plain_algorithm_1(video_model, length, windows_per_batch):
    """One window: equals the plain video model on the whole clip; more: the overlap average."""
    noise = torch.randn(
        length, *video_model_latent_shape(video_model), generator=torch.Generator().manual_seed(5)
    )
    expected = reference_algorithm_1(
        video_model,
        video_model.make_scheduler("ddim"),
        noise,
        conditions(length),
        reference(),
        3,
        3.5,
        2.0,
        16,
        4,
    ).clamp(0, 1)
    frames = run(
        video_model,
        length,
        num_inference_steps=3,
        latents=noise,
        windows_per_batch=windows_per_batch,
    )
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=1e-5)


def video_model_latent_shape(model):
    with torch.no_grad():
        return model.codec.encode(torch.zeros(1, 3, SIZE, SIZE)).shape[1:]


def test_dpm_solver_scheduler_runs(video_model):
    frames = run(video_model, 17, scheduler=video_model.make_scheduler("dpm++"))
    assert frames.shape == (17, 3, SIZE, SIZE)
    assert not torch.equal(frames, run(video_model, 17))


def test_frame_wise_ablation_treats_frames_independently(image_model):
    length = 7
    noise = torch.randn(
        length, *video_model_latent_shape(image_model), generator=torch.Generator().manual_seed(2)
    )
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


def test_conditions_are_read_lazily_window_by_window(video_model):
    source = RecordingFrames(conditions(40))
    AnchorPipeline(video_model)(reference(), source, num_inference_steps=2, progress=False)
    assert max(stop - start for start, stop in source.requests) <= 16


def test_uint8_memmap_conditions(video_model, tmp_path):
    frames = (conditions(17).movedim(1, -1) * 255).round().to(torch.uint8).numpy()
    stored = np.lib.format.open_memmap(
        tmp_path / "c.npy", mode="w+", dtype=np.uint8, shape=frames.shape
    )
    stored[:] = frames
    pipe = AnchorPipeline(video_model)
    out = pipe(
        reference(),
        stored,
        num_inference_steps=2,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.frames.shape == (17, SIZE, SIZE, 3)


def test_generate_frames_streams_chunk_by_chunk(video_model, monkeypatch):
    length, chunk = 40, 8
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
    )
    first = next(stream)
    assert first.dtype == np.uint8 and first.shape == (SIZE, SIZE, 3)
    assert decoded_chunks == [chunk], "only the first chunk is decoded before the first frame"
    rest = list(stream)
    assert len(rest) == length - 1
    assert decoded_chunks == [chunk] * (length // chunk)
    whole = run(video_model, length, output_type="np")
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
