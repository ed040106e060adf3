"""Training recipe tests: tiny presets on CPU with a synthetic identity dataset."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from anchorgen.errors import ConfigError, InputError
from anchorgen.models import (
    StructureGuidedDiffusion,
    spatial_parameters,
    temporal_parameters,
    tiny_test_model,
)
from anchorgen.presets import TrainConfig, get_preset
from anchorgen.training.recipe import (
    DiffusionLoss,
    TrainingRecipe,
    dry_run,
    global_batch_indices,
    latest_checkpoint,
    learning_rate_at,
    run_training,
)
from synthetic_identity import SyntheticIdentity, synthetic_factory

torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared CPU


def _config(tmp_path, model=None, **changes):
    """The tiny preset on a synthetic dataset dir, with changes (``model``: ModelConfig changes)."""
    data = tmp_path / "identity"
    data.mkdir(exist_ok=True)
    values = {
        **get_preset("tiny").to_dict(),
        "datasets": [str(data)],
        "output_dir": str(tmp_path / "run"),
        **changes,
    }
    values["model"] = {**values["model"], **(model or {})}
    return TrainConfig.from_dict(values)


def test_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    model = tiny_test_model(temporal=False).train()
    loss_fn = DiffusionLoss(model)
    item = SyntheticIdentity(length=2)
    batch = torch.utils.data.default_collate([item[0], item[1]])
    latents = model.encode_frames(batch["frames"])
    noise = torch.randn_like(latents)
    timesteps = torch.tensor([100, 400])
    weight = torch.ones(2, 1, 1, 16, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = loss_fn(
            latents,
            noise,
            timesteps,
            batch["conditions"],
            batch["reference"],
            torch.tensor([False, False]),
            weight,
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_dropped_appearance_hides_the_reference():
    """Appearance dropout trains the unconditional branch CFG uses: the reference is gone."""
    torch.manual_seed(0)
    model = StructureGuidedDiffusion.build(get_preset("tiny").model).eval()
    item = SyntheticIdentity(length=2)
    batch = torch.utils.data.default_collate([item[0], item[1]])
    latents = model.encode_frames(batch["frames"])
    args = (latents, torch.randn_like(latents), torch.tensor([100, 400]), batch["conditions"])
    weight = torch.ones(2, 1, 1, 16, 16)
    loss_fn = DiffusionLoss(model)
    with torch.no_grad():
        dropped = [
            loss_fn(*args, reference, torch.tensor([True, True]), weight)
            for reference in (batch["reference"], -batch["reference"])
        ]
        kept = [
            loss_fn(*args, reference, torch.tensor([False, False]), weight)
            for reference in (batch["reference"], -batch["reference"])
        ]
    assert dropped[0] == dropped[1]
    assert kept[0] != kept[1]


def test_batch_order_is_a_pure_function_of_the_step():
    first = [global_batch_indices(s, 5, 3, seed=1) for s in range(6)]
    assert first == [global_batch_indices(s, 5, 3, seed=1) for s in range(6)]
    flat = [
        i for batch in first[:5] for i in batch
    ]  # 15 indices = 3 epochs, each a permutation of 0..4
    assert all(sorted(flat[i : i + 5]) == list(range(5)) for i in (0, 5, 10))


def test_learning_rate_warms_up_then_stays_or_follows_half_a_cosine_to_zero(tmp_path):
    constant = _config(tmp_path, steps=110, learning_rate=1e-3, lr_warmup_steps=10)
    cosine = constant.replace(lr_schedule="cosine")
    for config in (constant, cosine):  # the same linear warm-up
        assert learning_rate_at(0, config) == pytest.approx(1e-4)
        assert learning_rate_at(9, config) == pytest.approx(1e-3)
    assert [learning_rate_at(s, constant) for s in (10, 60, 109)] == [1e-3] * 3
    # p = (step - 10) / 100: 1 at p = 0, 1/2 at p = 1/2, (1 + cos(0.9 pi)) / 2 at p = 0.9
    assert learning_rate_at(10, cosine) == pytest.approx(1e-3)
    assert learning_rate_at(60, cosine) == pytest.approx(5e-4)
    assert learning_rate_at(100, cosine) == pytest.approx(1e-3 * 0.0244717, rel=1e-4)
    assert learning_rate_at(110, cosine) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_at(500, cosine) == pytest.approx(0.0, abs=1e-12)  # resumed past steps
    with pytest.raises(ValueError, match="lr_schedule"):
        constant.replace(lr_schedule="linear")


def test_training_run_writes_run_directory_and_exports_loadable_model(tmp_path):
    config = _config(tmp_path, steps=6, checkpoint_every=2, sample_every=3)
    run_dir = run_training(config, synthetic_factory)
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["step-000004", "step-000006"]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "loss.png").is_file()
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "step-000003.png",
        "step-000006.png",
    ]
    rows = list(csv.DictReader((run_dir / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    model = StructureGuidedDiffusion.from_pretrained(run_dir, expected=config.model)
    assert model.dtype == torch.float32  # loads bf16 export into the default dtype
    weights = load_file(run_dir / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(v.dtype == torch.bfloat16 for v in weights.values())


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "a").mkdir()
    full = _config(tmp_path / "a", steps=4, checkpoint_every=2, sample_every=0)
    run_training(full, synthetic_factory)
    (tmp_path / "b").mkdir()
    interrupted = _config(tmp_path / "b", steps=4, checkpoint_every=2, sample_every=0)
    run_training(interrupted.replace(steps=2), synthetic_factory)  # stops after step 2 ...
    assert latest_checkpoint(interrupted.output_dir).name == "step-000002"
    run_training(interrupted, synthetic_factory)  # ... and the same command resumes
    a = load_file(full.output_dir / "checkpoints" / "step-000004" / "trainable.safetensors")
    b = load_file(interrupted.output_dir / "checkpoints" / "step-000004" / "trainable.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ema_a = load_file(full.output_dir / "checkpoints" / "step-000004" / "ema.safetensors")
    ema_b = load_file(interrupted.output_dir / "checkpoints" / "step-000004" / "ema.safetensors")
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    rows = list(csv.DictReader((interrupted.output_dir / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]


def test_stage2_keeps_temporal_weights_and_trains_spatial_ones(tmp_path):
    stage1 = tmp_path / "stage1"
    tiny_test_model(temporal=True).save_pretrained(stage1)
    config = _config(
        tmp_path,
        model={"temporal": True},
        steps=1,
        stage="finetune",
        init_from=str(stage1),
        clip_length=2,
        ema_decay=0.0,
        sample_every=0,
    )
    assert config.temporal_frozen and not config.replace(stage="pretrain").temporal_frozen
    # a fine-tune from random weights (Setting I) has no trained motion modules to keep
    assert not config.replace(init_from=None).temporal_frozen
    assert config.replace(init_from=None, freeze_temporal=True).temporal_frozen
    recipe = TrainingRecipe(config, synthetic_factory)
    recipe.setup()
    before_t = {n: p.detach().clone() for n, p in temporal_parameters(recipe.model).items()}
    before_s = {n: p.detach().clone() for n, p in spatial_parameters(recipe.model).items()}
    recipe.train()
    after_t, after_s = temporal_parameters(recipe.model), spatial_parameters(recipe.model)
    recipe.cleanup()
    assert before_t and all(torch.equal(before_t[n], after_t[n]) for n in before_t)
    assert any(not torch.equal(before_s[n], after_s[n]) for n in before_s)


def test_export_records_the_longest_clip_its_temporal_layers_learned(tmp_path):
    """generate's default window (``temporal_window``): set where a run trains the motion
    modules, inherited where they stay frozen, absent from models saved before it existed."""

    def trained(name, **changes):
        (tmp_path / name).mkdir()
        config = _config(
            tmp_path / name, model={"temporal": True}, steps=1, sample_every=0, **changes
        )
        run_dir = run_training(config, synthetic_factory)
        meta = json.loads((run_dir / "anchorgen_model.json").read_text())
        loaded = StructureGuidedDiffusion.from_pretrained(run_dir, expected=config.model)
        assert loaded.temporal_window == meta["temporal_window"]
        return run_dir, loaded.temporal_window

    stage1, window = trained("stage1", stage="pretrain", clip_length=3)
    assert window == 3
    # stage 2 freezes the motion modules: longer clips teach them nothing
    assert trained("stage2", stage="finetune", init_from=str(stage1), clip_length=4)[1] == 3
    unfrozen = dict(stage="finetune", init_from=str(stage1), freeze_temporal=False)
    assert trained("setting1_short", clip_length=2, **unfrozen)[1] == 3  # the longest seen
    assert trained("setting1_long", clip_length=4, **unfrozen)[1] == 4
    meta_path = stage1 / "anchorgen_model.json"
    meta = json.loads(meta_path.read_text())
    del meta["temporal_window"]
    meta_path.write_text(json.dumps(meta))
    assert StructureGuidedDiffusion.from_pretrained(stage1).temporal_window is None


def test_face_model_trains_with_the_same_recipe(tmp_path):
    config = _config(tmp_path, model={"part": "face"}, steps=2, sample_every=2, checkpoint_every=2)
    run_dir = run_training(config, synthetic_factory)
    model = StructureGuidedDiffusion.from_pretrained(run_dir, expected=config.model)
    assert model.inpainting and (run_dir / "samples" / "step-000002.png").is_file()


def test_int8_export_writes_quantized_weights_that_load(tmp_path):
    config = _config(tmp_path, model={"export_dtype": "int8"}, steps=2, checkpoint_every=2)
    run_dir = run_training(config, synthetic_factory)
    weights = load_file(run_dir / "unet" / "int8_weights.safetensors")
    assert weights["conv_in.weight"].dtype == torch.int8
    assert not (run_dir / "unet" / "diffusion_pytorch_model.safetensors").exists()
    model = StructureGuidedDiffusion.from_pretrained(run_dir, expected=config.model)
    assert model.dtype == torch.float32


def test_dry_run_catches_missing_dataset_and_schema_mismatch(tmp_path):
    config = _config(tmp_path)
    assert any("schema ok" in line for line in dry_run(config, synthetic_factory))
    with pytest.raises(InputError, match="dataset not found"):
        dry_run(_config(tmp_path, datasets=[str(tmp_path / "missing")]), synthetic_factory)

    def wrong_size(root, cfg):
        return SyntheticIdentity(image_size=16)

    with pytest.raises(InputError, match=r"schema mismatch.*'frames'"):
        dry_run(config, wrong_size)
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_run_dir_of_another_model_is_refused(tmp_path):
    config = _config(tmp_path, steps=1, sample_every=0)
    run_training(config, synthetic_factory)
    face = _config(tmp_path, model={"part": "face"}, steps=1)
    with pytest.raises(ConfigError, match="choose a new output_dir"):
        dry_run(face, synthetic_factory)
    with pytest.raises(ConfigError, match="body model of preset 'tiny'"):
        dry_run(
            _config(
                tmp_path,
                model={"part": "face"},
                output_dir=str(tmp_path / "other"),
                init_from=str(config.output_dir),
            ),
            synthetic_factory,
        )


def test_half_precision_on_cpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        dry_run(_config(tmp_path, mixed_precision="bf16"), synthetic_factory)


def test_lora_finetune_exports_only_adapters_and_reloads(tmp_path):
    base_dir = tmp_path / "base"
    base = tiny_test_model(temporal=False)
    base.save_pretrained(base_dir)
    config = _config(
        tmp_path, steps=2, lora_rank=2, init_from=str(base_dir), sample_every=0, ema_decay=0.0
    )
    run_dir = run_training(config, synthetic_factory)
    assert (run_dir / "identity.safetensors").is_file() and not (run_dir / "unet").exists()
    identity = load_file(run_dir / "identity.safetensors")
    assert identity and all(".lora_" in n or n.startswith("appearance.") for n in identity)
    loaded = StructureGuidedDiffusion.from_pretrained(run_dir, expected=config.model)
    assert loaded.lora_rank == 2
    lora_b = [p for n, p in loaded.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # trained away from the zero init
    base_weights = dict(base.named_parameters())
    for name, p in loaded.named_parameters():  # frozen base weights are the base's
        plain = name.replace(".base_layer", "")
        if ".lora_" not in name and not name.startswith("appearance."):
            assert torch.equal(p, base_weights[plain]), name
    with pytest.raises(ConfigError, match="lora_rank > 0 needs a base model"):
        _config(tmp_path, lora_rank=2)
