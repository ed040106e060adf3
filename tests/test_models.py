"""SGDM model tests: tiny random models on CPU."""

from __future__ import annotations

import pytest
import torch

from anchorgen.errors import ConfigError, InputError
from anchorgen.models import (
    StructureGuidedDiffusion,
    count_parameters,
    spatial_parameters,
    temporal_parameters,
    tiny_test_model,
)
from anchorgen.presets import get_preset
from tiny_inputs import LAT, B, C, F, random_inputs

torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared CPU


def _perturb_zero_convs(model: StructureGuidedDiffusion) -> None:
    """Make the structure branch non-trivial so a test of it can fail."""
    with torch.no_grad():
        for p in model.controlnet.parameters():
            p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize(("temporal", "inpainting"), [(False, False), (True, False), (False, True)])
def test_structure_branch_starts_as_noop(temporal, inpainting):
    model = tiny_test_model(temporal, inpainting)
    assert model.is_temporal == temporal and model.inpainting == inpainting
    noisy, t, cond, ref, inpaint = random_inputs(model)
    with torch.no_grad():
        tokens = model.encode_appearance(ref)
        strong = model.predict(noisy, t, cond, tokens, conditioning_scale=2.0, inpaint=inpaint)
        off = model.predict(noisy, t, cond, tokens, conditioning_scale=0.0, inpaint=inpaint)
        assert strong.shape == (B, F, C, LAT, LAT)
        assert torch.equal(strong, off)
        _perturb_zero_convs(model)
        assert not torch.allclose(model.predict(noisy, t, cond, tokens, 2.0, inpaint), off)


def test_face_model_input_channels_and_inpaint_required():
    face = tiny_test_model(temporal=False, inpainting=True)
    assert face.unet.config.in_channels == 2 * C + 1
    noisy, t, cond, ref, _ = random_inputs(face)
    with pytest.raises(InputError, match="inpaint"):
        face.predict(noisy, t, cond, face.encode_appearance(ref))


@pytest.mark.parametrize(("temporal", "inpainting"), [(True, False), (False, True)])
def test_save_load_round_trip_is_exact(tmp_path, temporal, inpainting):
    model = tiny_test_model(temporal, inpainting)
    _perturb_zero_convs(model)
    noisy, t, cond, ref, inpaint = random_inputs(model)
    model.save_pretrained(tmp_path / "m")
    loaded = StructureGuidedDiffusion.from_pretrained(tmp_path / "m", expected=model.config).eval()
    assert loaded.is_temporal == temporal and loaded.config == model.config
    with torch.no_grad():
        a = model.predict(noisy, t, cond, model.encode_appearance(ref), 1.0, inpaint)
        b = loaded.predict(noisy, t, cond, loaded.encode_appearance(ref), 1.0, inpaint)
    assert torch.equal(a, b)
    assert (tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_bf16_export_leaves_model_untouched(tmp_path):
    model = tiny_test_model(temporal=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "m", dtype=torch.bfloat16)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    loaded = StructureGuidedDiffusion.from_pretrained(tmp_path / "m", torch_dtype=torch.bfloat16)
    assert loaded.dtype == torch.bfloat16


def test_int8_quantization_error_is_within_half_a_step_per_output_channel():
    from anchorgen.models.quantize import dequantize_int8, quantize_int8

    weight = torch.randn(6, 4, 3, 3)
    weight[2] = 0.0  # an all-zero output channel
    weight[4] *= 100.0  # one channel on another scale
    quantized, scale = quantize_int8(weight)
    assert quantized.dtype == torch.int8 and scale.shape == (6,)
    restored = dequantize_int8(quantized, scale)
    error = (restored - weight).abs().flatten(1).amax(dim=1)
    assert torch.all(error <= scale / 2 + 1e-6)
    assert torch.equal(restored[2], weight[2])
    assert quantized.abs().flatten(1).amax(dim=1)[4] == 127  # each channel uses its full range


@pytest.mark.parametrize(("temporal", "inpainting"), [(True, False), (False, True)])
def test_int8_export_is_smaller_and_predicts_nearly_the_same(tmp_path, temporal, inpainting):
    model = tiny_test_model(temporal, inpainting)
    _perturb_zero_convs(model)
    model.save_pretrained(tmp_path / "bf16", dtype="bfloat16")
    model.save_pretrained(tmp_path / "int8", dtype="int8")
    size = {
        d: sum(f.stat().st_size for f in (tmp_path / d).rglob("*.safetensors"))
        for d in ("bf16", "int8")
    }
    assert size["int8"] < 0.6 * size["bf16"]
    loaded = StructureGuidedDiffusion.from_pretrained(tmp_path / "int8", expected=model.config)
    assert loaded.config == model.config and loaded.dtype == torch.float32
    noisy, t, cond, ref, inpaint = random_inputs(model)
    with torch.no_grad():
        a = model.predict(noisy, t, cond, model.encode_appearance(ref), 1.0, inpaint)
        b = loaded.eval().predict(noisy, t, cond, loaded.encode_appearance(ref), 1.0, inpaint)
    assert not torch.equal(a, b)  # really rounded
    assert (a - b).abs().mean() < 0.02 * a.abs().mean()
    as_bf16 = StructureGuidedDiffusion.from_pretrained(
        tmp_path / "int8", torch_dtype=torch.bfloat16
    )
    assert as_bf16.dtype == torch.bfloat16
    (tmp_path / "int8" / "unet" / "int8_weights.safetensors").unlink()
    with pytest.raises(InputError, match="cannot load"):
        StructureGuidedDiffusion.from_pretrained(tmp_path / "int8")


def test_int8_export_is_refused_for_a_lora_identity():
    from anchorgen.presets import TrainConfig

    preset = get_preset("tiny")
    with pytest.raises(ConfigError, match="int8"):
        TrainConfig.from_dict(
            {
                **preset.to_dict(),
                "lora_rank": 4,
                "init_from": "runs/base",
                "model": {**preset.model.to_dict(), "export_dtype": "int8"},
            }
        )


def test_loading_another_preset_or_part_is_refused(tmp_path):
    tiny_test_model(temporal=False, inpainting=True).save_pretrained(tmp_path / "face")
    body = tiny_test_model(temporal=False).config
    with pytest.raises(ConfigError, match="face model of preset 'tiny'"):
        StructureGuidedDiffusion.from_pretrained(tmp_path / "face", expected=body)
    with pytest.raises(InputError, match="not an anchorgen model directory"):
        StructureGuidedDiffusion.from_pretrained(tmp_path)


def test_a_model_or_run_config_saved_with_a_removed_option_off_still_loads(tmp_path):
    """Models and run configs saved before ``reference_concat`` was removed carry it as false:
    they load; one that used it is refused with a message, not an unknown-key error."""
    import json

    from anchorgen.models.sgdm import MODEL_FILE
    from anchorgen.presets import TrainConfig

    model = tiny_test_model(temporal=False)
    model.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / MODEL_FILE
    meta = json.loads(path.read_text())
    meta["model_config"]["reference_concat"] = False
    path.write_text(json.dumps(meta))
    assert StructureGuidedDiffusion.from_pretrained(tmp_path / "m").config == model.config
    meta["model_config"]["reference_concat"] = True
    path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="reference_concat=True is an option this version"):
        StructureGuidedDiffusion.from_pretrained(tmp_path / "m")

    run_config = get_preset("tiny").to_dict()  # a run directory's config.yaml, as a dict
    run_config["model"]["condition_concat"] = False
    assert TrainConfig.from_dict(run_config).model == get_preset("tiny").model


def test_temporal_and_spatial_parameter_groups_partition_the_denoiser():
    model = tiny_test_model(temporal=True)
    temporal, spatial = temporal_parameters(model), spatial_parameters(model)
    assert temporal and spatial and not set(temporal) & set(spatial)
    assert all("motion_modules" in n for n in temporal)
    assert set(temporal) | set(spatial) == {n for n, _ in model.named_parameters()}


def test_scratch_identity_fits_in_60_mb():
    body_config = get_preset("scratch-256").model
    body = count_parameters(body_config)["total"]
    face = count_parameters(get_preset("face").model)["total"]
    assert body > 5e6 and face > 2e6
    size = body_config.image_size
    plate = 4 * size * size if body_config.background_plate else 0  # uint8 image + hole
    assert (body + face) * 2 + plate <= 60e6


def test_sd15_missing_local_weights_lists_what_is_needed(tmp_path):
    config = get_preset("sd15").model.replace(sd15_path=tmp_path / "nope")
    with pytest.raises(ConfigError) as info:
        StructureGuidedDiffusion.build(config)
    message = str(info.value)
    for needed in ("sd15_path", "clip_path", "motion_adapter_path", "never downloaded"):
        assert needed in message


def test_sd15_architecture_counts_match_sd15_sizes():
    counts = count_parameters(get_preset("sd15").model)
    assert 0.85e9 < counts["unet_spatial"] < 0.87e9  # SD1.5 UNet: 859.5 M
    assert counts["temporal"] > 0.4e9 and counts["controlnet"] > 0.3e9


def test_temporal_batches_past_the_attention_limit_run_in_chunks(monkeypatch):
    """More clips than the fused attention kernels take (clips x h x w > the limit) are
    predicted chunk by chunk, with the same result as one forward."""
    import anchorgen.models.sgdm as sgdm

    model = tiny_test_model(True, False)
    _perturb_zero_convs(model)
    noisy, t, cond, ref, _ = random_inputs(model)
    with torch.no_grad():
        tokens = model.encode_appearance(ref)
        whole = model.predict(noisy, t, cond, tokens, 2.0)
        calls = []
        unet_forward = model.unet.forward
        monkeypatch.setattr(
            model.unet, "forward", lambda *a, **k: calls.append(1) or unet_forward(*a, **k)
        )
        monkeypatch.setattr(sgdm, "ATTENTION_BATCH_LIMIT", LAT * LAT)  # one clip per forward
        chunked = model.predict(noisy, t, cond, tokens, 2.0)
    assert len(calls) == B
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
