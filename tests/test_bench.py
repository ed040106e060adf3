"""``anchorgen bench`` and the fast-path levers (issue 6), on the CPU with the tiny preset."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from anchorgen.bench import (
    SAMPLE_LANDMARKS,
    STAGES,
    BenchConfig,
    HostMemorySampler,
    bench_model_configs,
    build_models,
    forward_flops,
    host_resident_kib,
    open_encoder,
    ping_pong_order,
    psnr,
    sample_motion,
    track_sample,
)
from anchorgen.errors import ConfigError
from anchorgen.pipelines.accel import (
    DeviceFrames,
    NaiveModel,
    cache_frames,
    ensure_sdpa,
    latents_home,
    optimize_model,
)
from anchorgen.pipelines.anchor import AnchorPipeline, ArrayFrames

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def models():
    return build_models("tiny", CPU, seed=0)


def _conditions(length: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8)


def predict_inputs(model) -> tuple[torch.Tensor, ...]:
    """One clip of 2 frames for ``model.predict``: noisy latents, timestep, conditions, tokens."""
    c, h, s = model.config.latent_channels, model.config.latent_size, model.config.image_size
    return (
        torch.randn(1, 2, c, h, h),
        torch.tensor([500]),
        torch.rand(1, 2, 3, s, s),
        torch.randn(1, 16, model.config.cross_attention_dim),
    )


def test_fast_path_matches_the_naive_reference(models):
    """Batched windows with CFG folded, device-cached conditions, channels-last and latents on
    the model's device give the latents of one window per forward and CFG as two forwards."""
    body, _ = models
    length, size = 7, body.config.image_size
    conditions = _conditions(length, size)
    c, h = body.config.latent_channels, body.config.latent_size
    noise = torch.randn(length, c, h, h, generator=torch.Generator().manual_seed(1))
    settings = dict(
        num_inference_steps=2,
        guidance_scale=3.5,
        controlnet_conditioning_scale=2.0,
        window_size=4,
        window_overlap=1,
        latents=noise,
        progress=False,
    )
    fast_model = copy.deepcopy(body)
    optimize_model(fast_model, channels_last=True)
    fast = AnchorPipeline(fast_model).denoise(
        conditions[0],
        conditions,
        windows_per_batch=8,
        latents_device=CPU,
        condition_cache_bytes=1 << 30,
        **settings,
    )
    calls = []
    naive = NaiveModel(body)
    original = body.unet.forward

    def counted(*args, **kwargs):  # clips per UNet forward
        calls.append(args[0].shape[0])
        return original(*args, **kwargs)

    body.unet.forward = counted
    try:
        reference = AnchorPipeline(naive).denoise(
            conditions[0], conditions, windows_per_batch=1, condition_cache_bytes=0, **settings
        )
    finally:
        del body.unet.forward
    windows = 2  # (0, 4), (3, 7)
    assert calls == [1] * (2 * windows * 2)  # steps x windows x CFG halves, one item each
    torch.testing.assert_close(fast, reference, atol=2e-4, rtol=1e-4)
    assert not torch.equal(fast, noise)


def test_naive_model_splits_the_cfg_halves_of_a_face_batch(models):
    _, face = models
    c, h, s = face.config.latent_channels, face.config.latent_size, face.config.image_size
    batch = 6  # 3 one-frame windows x 2 CFG halves
    inputs = (
        torch.randn(batch, 1, c, h, h),
        torch.full((batch,), 300),
        torch.rand(batch, 1, 3, s, s),
        torch.randn(batch, 16, face.config.cross_attention_dim),
    )
    inpaint = (torch.ones(batch, 1, 1, h, h), torch.randn(batch, 1, c, h, h))
    sizes = []
    naive = NaiveModel(face, parts=2)
    original = face.unet.forward
    face.unet.forward = lambda *a, **k: sizes.append(a[0].shape[0]) or original(*a, **k)
    try:
        with torch.no_grad():
            split = naive.predict(*inputs, conditioning_scale=1.0, inpaint=inpaint)
    finally:
        del face.unet.forward
    with torch.no_grad():
        whole = face.predict(*inputs, conditioning_scale=1.0, inpaint=inpaint)
    assert sizes == [3, 3]  # frames per UNet forward: one CFG half each
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=1e-4)


def test_device_frames_equal_host_frames_and_respect_the_budget():
    frames = _conditions(5, 16)
    cached = cache_frames(frames, CPU, budget_bytes=frames.nbytes)
    assert isinstance(cached, DeviceFrames) and len(cached) == 5
    torch.testing.assert_close(cached[1:4], ArrayFrames(frames)[1:4], atol=0, rtol=0)
    assert cache_frames(frames, CPU, budget_bytes=frames.nbytes - 1) is frames
    assert cache_frames(frames, CPU) is frames  # CPU default: nothing to gain
    floats = frames.astype(np.float32) / 255
    assert cache_frames(floats, CPU, budget_bytes=1 << 30) is floats


def test_optimize_model_sets_sdpa_channels_last_and_dtype(models):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    model = copy.deepcopy(models[0])
    model.unet.set_attn_processor(AttnProcessor())
    applied = optimize_model(model, dtype=torch.bfloat16, channels_last=True)
    processors = model.unet.attn_processors.values()
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors)
    assert applied["sdpa_attention_layers"] == ensure_sdpa(model.unet) + ensure_sdpa(
        model.controlnet
    )
    assert applied["dtype"] == "bfloat16" and model.dtype == torch.bfloat16
    conv = model.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    # a bf16 forward runs and stays close to the float32 one
    inputs = predict_inputs(model)
    with torch.no_grad():
        low = model.predict(*inputs).float()
        full = models[0].predict(*inputs)
    assert torch.isfinite(low).all()
    assert (low - full).abs().mean() < 0.05 * full.abs().mean()
    with pytest.raises(ConfigError):
        optimize_model(model, compile_mode="max-autotune")
    # compile is lazy and in place: the classes (and so is_temporal) are unchanged
    compiled = copy.deepcopy(models[0])
    assert optimize_model(compiled, compile_mode="default")["compile"] == "default"
    assert compiled.unet._compiled_call_impl is not None and compiled.is_temporal
    assert compiled.controlnet._compiled_call_impl is not None


def test_fused_qkv_and_a_pinned_attention_backend_keep_the_prediction(models):
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    model = copy.deepcopy(models[0])
    applied = optimize_model(model, fuse_qkv=True, attention_backend="math")
    layers = list(model.unet.attn_processors.values()) + list(
        model.controlnet.attn_processors.values()
    )
    assert applied["fused_qkv_layers"] == len(layers) > 0
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in layers)
    assert applied["attention_backend"] == "math"
    inputs = predict_inputs(model)
    with torch.no_grad():
        fused, plain = model.predict(*inputs), models[0].predict(*inputs)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)
    # the pin is real: a backend the CPU lacks fails instead of falling back
    optimize_model(model, attention_backend="cudnn")
    with pytest.raises(RuntimeError), torch.no_grad():
        model.predict(*inputs)
    with pytest.raises(ConfigError, match="attention_backend"):
        optimize_model(model, attention_backend="fastest")
    with pytest.raises(ValueError, match="attention_backend"):
        BenchConfig(attention_backend="fastest")


def test_latents_live_on_the_gpu_within_the_budget_and_on_the_host_past_it():
    cuda, cpu = torch.device("cuda:1"), torch.device("cpu")
    shape = (48, 64, 64)  # scratch-256: 786,432 bytes per float32 frame latent
    assert latents_home(cuda, 100, shape, copies=3, budget_bytes=3 * 100 * 786_432) == cuda
    assert latents_home(cuda, 101, shape, copies=3, budget_bytes=3 * 100 * 786_432) == cpu
    assert latents_home(cuda, 2_250, shape, copies=4) == cuda  # 90 s at 25 fps: 7.1 GB
    assert latents_home(cuda, 3_000, shape, copies=4) == cpu
    assert latents_home(cpu, 1, shape, copies=1) == cpu


def test_operator_kinds_of_aten_operators_and_cuda_kernels():
    from anchorgen.bench import operator_kind

    kinds = {
        "aten::cudnn_convolution": "convolution",
        "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "convolution",
        "aten::_scaled_dot_product_flash_attention": "attention",
        "pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>": "attention",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64": "attention",
        "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_bias_TNT": "matmul",
        "void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<c10::BFloat16>": (
            "normalisation"
        ),
        "aten::addmm": "matmul",
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64": "matmul",
        "aten::native_group_norm": "normalisation",
        "triton_poi_fused_add_mul_0": "other",
        "aten::add_": "other",
    }
    assert {name: operator_kind(name) for name in kinds} == kinds


def test_bench_settings_are_validated():
    with pytest.raises(ValueError, match="reference_frames"):
        BenchConfig(frames=10, reference_frames=11)
    with pytest.raises(ValueError, match="compile"):
        BenchConfig(compile="max-autotune")
    with pytest.raises(ConfigError, match="dtype"):
        BenchConfig().with_overrides(["dtype=fp8"])
    with pytest.raises(ValueError, match="scheduler"):
        BenchConfig(scheduler="euler")
    with pytest.raises(ValueError, match="profile_frames"):
        BenchConfig(frames=10, reference_frames=0, profile_frames=11)


def test_cuda_graph_steps_mark_a_generation_per_forward_and_copy_the_output(models, monkeypatch):
    """With ``compile="reduce-overhead"`` each forward starts a new CUDA-graph generation and
    returns a copy, so the next replay cannot overwrite a prediction still in use."""
    model = copy.deepcopy(models[0])
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    inputs = predict_inputs(model)
    outputs = []
    original = model.unet.forward

    def kept(*args, **kwargs):  # the UNet's own output tensor
        result = original(*args, **kwargs)
        outputs.append(result.sample)
        return result

    model.unet.forward = kept
    with torch.no_grad():
        plain = model.predict(*inputs)
        assert not marks and plain.data_ptr() == outputs[-1].data_ptr()
        model.cuda_graph_steps = True
        copied = model.predict(*inputs)
    assert marks == [1] and copied.data_ptr() != outputs[-1].data_ptr()
    torch.testing.assert_close(copied, plain)
    graphed = copy.deepcopy(models[0])
    optimize_model(graphed, compile_mode="reduce-overhead")
    assert graphed.cuda_graph_steps and graphed.static_batch_shapes


def test_bench_presets_and_helpers(models):
    body, face = bench_model_configs("sd15")
    assert (body.image_size, body.temporal, body.pretrained, body.codec) == (
        512,
        True,
        False,
        "vae",
    )
    assert (face.part, face.image_size, face.inpainting, face.temporal) == (
        "face",
        256,
        True,
        False,
    )
    assert face.block_out_channels == body.block_out_channels
    body, face = bench_model_configs("scratch-256")
    assert (body.preset, face.preset) == ("scratch-256", "face")
    assert ping_pong_order(4, 9).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    a = np.zeros((2, 4, 4, 3), np.uint8)
    assert psnr(a, a + 1) == pytest.approx(20 * np.log10(255), abs=1e-6)
    # FLOPs scale with the batch (CFG halves) and the frames of a frame-wise model
    _, face_model = models
    tokens = torch.zeros(1, 16, face_model.config.cross_attention_dim)
    one = forward_flops(face_model, 1, tokens, batch=1)
    assert one > 0
    assert forward_flops(face_model, 1, tokens, batch=2) == pytest.approx(2 * one)
    assert forward_flops(face_model, 3, tokens, batch=1) == pytest.approx(3 * one)


def test_bench_motion_draws_the_body_conditions_in_the_preset_style(tmp_path):
    from anchorgen.prepare.skeleton import BODY_LINES

    assert bench_model_configs("scratch-256")[0].condition_style == "skeleton"
    (tmp_path / "mesh").mkdir()
    (tmp_path / "skeleton").mkdir()
    mesh = sample_motion(5, 64, 64, 3, tmp_path / "mesh", "mesh")
    skeleton = sample_motion(5, 64, 64, 3, tmp_path / "skeleton", "skeleton")
    assert not np.array_equal(mesh.conditions, skeleton.conditions)
    np.testing.assert_array_equal(mesh.face_conditions, skeleton.face_conditions)  # face: mesh
    colours = {tuple(c) for c in np.asarray(skeleton.conditions).reshape(-1, 3)}
    assert (0, 0, 0) in colours and set(BODY_LINES.values()) & colours  # lines on black
    assert not set(BODY_LINES.values()) & {
        tuple(c) for c in np.asarray(mesh.conditions).reshape(-1, 3)
    }


def test_cli_bench_writes_the_json_schema(tmp_path):
    from typer.testing import CliRunner

    from anchorgen.cli import app

    out = tmp_path / "bench.json"
    args = ["bench", "--frames", "8", "--reference-frames", "5", "--out", str(out)]
    for setting in (
        "num_inference_steps=1",
        "window_size=4",
        "window_overlap=1",
        "matmul_size=64",
        "source_frames=3",
        "warmup=true",
        "profile_frames=4",
    ):
        args += ["--set", setting]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tiny preset runs on the CPU" in result.output and "| total |" in result.output
    data = json.loads(out.read_text())
    assert data["complete"] and data["preset"] == "tiny" and data["frames"] == 8
    assert set(data["stages_seconds"]) == set(STAGES)
    assert all(v > 0 for v in data["stages_seconds"].values())
    assert data["total_seconds"] == pytest.approx(sum(data["stages_seconds"].values()))
    assert data["seconds_per_frame"] == pytest.approx(data["total_seconds"] / 8)
    assert data["frames_per_second"] == pytest.approx(8 / data["total_seconds"])
    assert data["peak_gpu_gib"] is None and data["host_peak_rss_gib"] > 0
    if host_resident_kib():  # Linux
        assert data["host_fast_path_peak_gib"]["anonymous"] > 0
    assert data["stages_peak_gpu_gib"] is None  # per-stage GPU peaks exist on CUDA only
    flops = data["flops"]
    assert flops["body_denoise_tflop"] > 0 and flops["matmul_tflops_per_s"] > 0
    assert flops["matmul_dtype"] == "float32" and flops["matmul_size"] == 64
    assert flops["body_denoise_fraction_of_matmul"] == pytest.approx(
        flops["body_denoise_tflops_per_s"] / flops["matmul_tflops_per_s"]
    )
    assert data["fast_path"]["dtype"] == "float32" and data["fast_path"]["channels_last"]
    assert data["settings"]["warmup"] is True and data["setup_seconds"]["warmup"] > 0
    reference = data["reference"]
    assert reference["frames"] == 5 and reference["dtype"] == "float32"
    assert reference["speedup"] == pytest.approx(
        reference["seconds_per_frame"] / reference["fast_seconds_per_frame"]
    )
    assert reference["psnr_pass"] and reference["psnr_db"] >= 35.0
    assert reference["finite_latents"] and reference["fast_output_std"] > 0
    assert data["finite_latents"] and data["encoder"] == "h264 (PyAV)"  # PyAV is installed here
    profile = data["profile"]  # CPU time without CUDA
    assert profile["clock"] == "cpu" and profile["frames"] == 4 and profile["total_seconds"] > 0
    assert profile["seconds_by_kind"]["convolution"] > 0
    assert sum(profile["seconds_by_kind"].values()) == pytest.approx(profile["total_seconds"])
    assert "| profile (cpu time, 1 body step, 4 frames) |" in result.output
    env = data["environment"]
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["diffusers"]
    assert env["date"].startswith("20")


@pytest.mark.gpu
def test_sd15_bench_on_a_gpu(tmp_path):
    """Opt-in (``-m gpu``): the paper-scale preset end to end on a few frames."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from anchorgen.bench import run_bench

    config = BenchConfig(preset="sd15", frames=20, reference_frames=16, num_inference_steps=2)
    data = run_bench(config, progress=False, echo=lambda _: None)
    assert data["preset"] == "sd15" and data["peak_gpu_gib"] > 0
    stage_peaks = data["stages_peak_gpu_gib"]
    assert set(stage_peaks) == set(STAGES)
    assert max(stage_peaks.values()) <= data["peak_gpu_gib"]
    assert data["fast_path"]["dtype"] == "bfloat16"
    assert data["reference"]["psnr_db"] > 0


def test_encoder_falls_back_to_opencv_without_pyav(tmp_path, monkeypatch):
    import sys

    import cv2

    from anchorgen.bench import encoder_name

    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    assert encoder_name().startswith("mpeg4")
    frames = _conditions(3, 64)
    with open_encoder(tmp_path / "v.mp4", 25.0) as writer:
        for frame in frames:
            writer.write(frame)
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()


@pytest.mark.slow
def test_stored_sample_landmarks_match_a_fresh_tracking():
    """The embedded landmarks are what MediaPipe Holistic finds on the sample (regenerate them
    with ``track_sample(24).save(SAMPLE_LANDMARKS)``)."""
    pytest.importorskip("mediapipe")
    from anchorgen.landmarks import LandmarkSequence

    stored = LandmarkSequence.load(SAMPLE_LANDMARKS)
    assert len(stored) == 24 and stored.image_size == (512, 512)
    fresh = track_sample(3)
    np.testing.assert_allclose(fresh.face, stored.face[:3], atol=2.0)
    np.testing.assert_allclose(fresh.pose[..., :2], stored.pose[:3, :, :2], atol=2.0)


@pytest.mark.skipif(not host_resident_kib(), reason="needs /proc/self/status (Linux)")
def test_host_memory_sampler_sees_an_allocation_as_anonymous_and_a_mapped_file_as_file_backed(
    tmp_path,
):
    with HostMemorySampler(interval=0.01) as before:
        pass
    with HostMemorySampler(interval=0.01) as during:
        block = np.ones(256 * 2**20, np.uint8)  # 256 MiB, every page touched
        mapped = np.lib.format.open_memmap(tmp_path / "spool.npy", "w+", np.uint8, (256 * 2**20,))
        mapped[:] = 1  # every page of the file resident
        del block, mapped
    grown = {k: during.peak_gib[k] - before.peak_gib[k] for k in before.peak_gib}
    assert grown["anonymous"] > 0.2 and grown["file_backed"] > 0.2


def test_a_plate_reading_preset_is_benchmarked_with_a_plate():
    """scratch-256 reads its clip's background plate: bench gives its random body one, so the
    timed forward has the plate's input channels, as an identity's would."""
    from anchorgen.pipelines.anchor import background_inpainting

    body, face = build_models("scratch-256", CPU, seed=0)
    assert body.config.background_plate and not face.config.background_plate
    assert body.background.image.shape == (3, 256, 256)
    assert 0 < body.background.hole.mean() < 1
    inpaint = background_inpainting(body, 2, 256, 256)  # latents: (N, 1, h, w), (N, C, h, w)
    assert inpaint.mask.shape == (2, 1, 64, 64)
    assert inpaint.masked_latents.shape == (2, body.codec.latent_channels, 64, 64)
