"""`anchorgen generate`: tiny random identity, real motion sources, marked output with audio."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from anchorgen.errors import InputError
from anchorgen.generate import GenerateConfig, generate
from anchorgen.io.dataset import PreparedDataset, write_image
from anchorgen.io.video import iter_frames, probe_video, read_audio, write_wav
from anchorgen.io.watermark import verify_video
from anchorgen.models import tiny_model_config
from anchorgen.models.sgdm import StructureGuidedDiffusion
from anchorgen.prepare.pipeline import PrepareConfig, prepare
from anchorgen.prepare.sample import write_sample_clip
from tests.conftest import REPO

FAST = GenerateConfig(num_inference_steps=2, windows_per_batch=2)


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    """(identity dir with random 128 px body/face models, its prepared dataset)."""
    root = tmp_path_factory.mktemp("identity")
    clip = write_sample_clip(root / "clip.mp4", seconds=4.0, fps=8, size=256)
    config = PrepareConfig(size=128, face_size=128, fps=8, holdout_seconds=1.0, workers=1)
    dataset = prepare(clip, root / "dataset", config, progress=False)
    for part, cfg in (
        ("body", tiny_model_config(temporal=True).replace(image_size=128)),
        ("face", tiny_model_config(temporal=False, inpainting=True).replace(image_size=128)),
    ):
        torch.manual_seed(0)
        StructureGuidedDiffusion.build(cfg).save_pretrained(root / "model" / part)
    return root / "model", dataset


def _frames(path):
    return np.stack(list(iter_frames(path)))


def test_dataset_motion_gives_a_marked_video_with_audio(identity, tmp_path):
    model, dataset = identity
    out = tmp_path / "heldout.mp4"
    summary = generate(model, dataset, out, FAST, dataset=dataset, progress=False)
    info = probe_video(out)
    assert summary["frames"] == 8 and (info.width, info.height) == (128, 128) and info.fps == 8
    audio = read_audio(out)
    assert abs(len(audio) / 16000 - 8 / 8) <= 1 / 8 + 1024 / 16000, "audio and video lengths differ"
    result = verify_video(out)
    assert result.metadata_mentions_anchorgen
    assert "AI-generated" in result.metadata.get("comment", "")


def test_seed_makes_output_reproducible_and_label_is_optional(identity, tmp_path):
    model, dataset = identity
    a, b, c = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    generate(model, dataset, a, FAST, dataset=dataset, progress=False)
    generate(model, dataset, b, FAST, dataset=dataset, progress=False)
    generate(model, dataset, c, FAST.replace(visible_label=False), dataset=dataset, progress=False)
    fa, fb, fc = _frames(a), _frames(b), _frames(c)
    assert np.array_equal(fa, fb)
    differs = np.abs(fa.astype(int) - fc.astype(int)).max(axis=(0, 3)) > 40  # (H, W)
    rows, _cols = np.nonzero(differs)
    assert rows.size > 0 and rows.min() > 96, "only the label's band at the bottom changes"


def test_landmark_file_and_image_folder_motions(identity, tmp_path):
    model, dataset = identity
    data = PreparedDataset(dataset)
    motion = data.landmarks.slice(0, 12)
    motion.save(tmp_path / "motion.npz")
    summary = generate(
        model, tmp_path / "motion.npz", tmp_path / "lm.mp4", FAST, dataset=dataset, progress=False
    )
    assert summary["frames"] == 12
    folder = tmp_path / "renders"
    folder.mkdir()
    for i in range(5):
        write_image(folder / f"{i}.png", data.render(i))
    summary = generate(model, folder, tmp_path / "img.mp4", FAST, dataset=dataset, progress=False)
    assert summary["frames"] == 5


def test_audio_of_another_length_is_trimmed_with_a_warning(identity, tmp_path, caplog):
    model, dataset = identity
    wav = tmp_path / "long.wav"
    write_wav(wav, 0.1 * np.sin(np.arange(16000 * 3) / 16000 * 2 * np.pi * 220).astype(np.float32))
    with caplog.at_level(logging.WARNING):
        generate(
            model, dataset, tmp_path / "o.mp4", FAST, dataset=dataset, audio=wav, progress=False
        )
    assert any("trimmed" in r.message for r in caplog.records)
    assert abs(len(read_audio(tmp_path / "o.mp4")) / 16000 - 1.0) <= 1 / 8 + 1024 / 16000


def test_reference_without_a_face_skips_face_enhancement(identity, tmp_path, caplog):
    model, dataset = identity
    blank = tmp_path / "wall.png"
    write_image(blank, np.full((128, 128, 3), 90, np.uint8))
    with caplog.at_level(logging.WARNING):
        generate(
            model,
            dataset,
            tmp_path / "o.mp4",
            FAST,
            dataset=dataset,
            reference=blank,
            progress=False,
        )
    assert any("face enhancement is skipped" in r.message for r in caplog.records)


def test_bad_inputs(identity, tmp_path):
    model, dataset = identity
    with pytest.raises(InputError, match="does not exist"):
        generate(
            model, dataset, tmp_path / "missing" / "o.mp4", FAST, dataset=dataset, progress=False
        )
    with pytest.raises(InputError, match="motion not found"):
        generate(
            model, tmp_path / "nope.mp4", tmp_path / "o.mp4", FAST, dataset=dataset, progress=False
        )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError):
        generate(model, empty, tmp_path / "o.mp4", FAST, dataset=dataset, progress=False)
    with pytest.raises(InputError, match="model directory not found"):
        generate(
            tmp_path / "no-model",
            dataset,
            tmp_path / "o.mp4",
            FAST,
            dataset=dataset,
            progress=False,
        )
    assert not (tmp_path / "o.mp4").exists()


def test_cli_generate_and_verify(identity, tmp_path):
    model, dataset = identity
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = tmp_path / "cli.mp4"
    args = ["generate", "--model", str(model), "--dataset", str(dataset), "--motion", str(dataset)]
    result = subprocess.run(
        [sys.executable, "-m", "anchorgen", *args, "--out", str(out), "--steps", "2"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert "wrote 8 frames" in result.stdout
    verify = subprocess.run(
        [sys.executable, "-m", "anchorgen", "verify", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "metadata comment: AI-generated by anchorgen" in verify.stdout


def test_speech_drives_the_identity_without_a_motion(identity, tmp_path):
    from anchorgen.motion.audio2motion.train import PRESETS, build_model, save_run

    model, dataset = identity
    config = PRESETS["audio2motion-tiny"].replace(overwrite=True)
    torch.manual_seed(0)
    data = PreparedDataset(dataset)
    run = save_run(tmp_path / "speech", build_model(config, fps=8.0), config, data.landmarks, [])
    wav = tmp_path / "speech.wav"
    t = np.arange(16000 * 2) / 16000
    write_wav(
        wav,
        (0.2 * np.abs(np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 200 * t)).astype(np.float32),
    )
    config = FAST.replace(face_enhance=False)
    summary = generate(
        model,
        None,
        tmp_path / "speech.mp4",
        config,
        dataset=dataset,
        audio=wav,
        speech_model=run,
        progress=False,
    )
    assert summary["frames"] == 16  # 2 s of speech at the identity's 8 fps
    assert abs(len(read_audio(tmp_path / "speech.mp4")) / 16000 - 2.0) <= 1 / 8 + 1024 / 16000
    with pytest.raises(InputError, match="--audio"):
        generate(model, None, tmp_path / "x.mp4", config, dataset=dataset, progress=False)


def test_motion_is_extended_by_ping_pong(identity, tmp_path):
    model, dataset = identity
    motion = PreparedDataset(dataset).landmarks.slice(0, 6)
    looped = motion.ping_pong(14)
    # forwards 0..5, backwards 4..1, forwards again: no jump between neighbouring frames
    expected = [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1, 2, 3]
    assert np.array_equal(looped.face, motion.face[expected], equal_nan=True)
    motion.save(tmp_path / "m.npz")
    config = FAST.replace(motion_seconds=2.0, face_enhance=False)
    summary = generate(
        model, tmp_path / "m.npz", tmp_path / "o.mp4", config, dataset=dataset, progress=False
    )
    assert summary["frames"] == 16


def test_mesh_render_video_motion(identity, tmp_path):
    from anchorgen.io.video import write_video

    model, dataset = identity
    data = PreparedDataset(dataset)
    video = tmp_path / "mesh.mp4"
    write_video(video, (data.render(i) for i in range(6)), fps=8)
    config = FAST.replace(motion_kind="mesh_video")  # small renders: name the kind
    summary = generate(model, video, tmp_path / "o.mp4", config, dataset=dataset, progress=False)
    assert summary["frames"] == 6


def test_evaluate_with_ablations(identity, tmp_path):
    import json

    from anchorgen.evaluation.run import evaluate

    model, dataset = identity
    summary = evaluate(model, dataset, tmp_path / "eval", FAST, ablations=True, progress=False)
    results = summary["results"]
    assert {
        "anchorgen",
        "retrieval (nearest pose)",
        "reference repeated",
        "w/o temporal denoising",
    } <= set(results)
    # the default window setting is the main run itself, reused rather than rendered twice
    assert results["ws 16 / os 4"]["psnr"] == results["anchorgen"]["psnr"]
    assert results["w/o face enhancement"]["psnr"] != results["anchorgen"]["psnr"]
    # the body codec's grid is measured on every row, real frames included
    assert all(results[k]["grid_contrast"] >= 0 for k in ("anchorgen", "reference repeated"))
    stored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert stored["frames"] == 8 and (tmp_path / "eval" / "side_by_side.mp4").is_file()


def test_windows_default_to_the_clip_length_the_body_was_trained_on(identity, tmp_path):
    """A body whose motion modules learned 2-frame clips renders 2-frame windows unless told
    otherwise; one saved without the record keeps the paper's ws 16 / os 4."""
    import json
    import shutil

    from anchorgen.evaluation.run import RENDER_INDEX, evaluate

    model, dataset = identity
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    meta_path = copy / "body" / "anchorgen_model.json"
    meta = json.loads(meta_path.read_text())
    assert meta["temporal_window"] is None  # built, never trained
    meta_path.write_text(json.dumps({**meta, "temporal_window": 2}))

    def rendered_windows(identity_dir, config):
        out = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        evaluate(identity_dir, dataset, out, config, render_only=True, progress=False)
        used = json.loads((out / RENDER_INDEX).read_text())["generate_config"]
        return used["window_size"], used["window_overlap"], used["windows_per_batch"]

    unset = FAST.replace(windows_per_batch=None)
    assert rendered_windows(copy, unset) == (2, 0, 32)
    assert rendered_windows(copy, unset.replace(window_size=8)) == (8, 2, 8)
    assert rendered_windows(model, unset) == (16, 4, 4)


def test_evaluate_render_only_then_score(identity, tmp_path):
    """--render-only writes frames without scoring; --renders scores them to the same numbers."""
    import json

    from anchorgen.evaluation.run import RENDER_INDEX, evaluate

    model, dataset = identity
    evaluate(model, dataset, tmp_path / "r", FAST, render_only=True, progress=False)
    index = json.loads((tmp_path / "r" / RENDER_INDEX).read_text())
    assert (
        list(index["variants"]) == ["anchorgen"] and not (tmp_path / "r" / "metrics.json").exists()
    )
    scored = evaluate(model, dataset, tmp_path / "s", FAST, renders=tmp_path / "r", progress=False)
    direct = evaluate(model, dataset, tmp_path / "d", FAST, progress=False)
    assert scored["results"]["anchorgen"]["psnr"] == direct["results"]["anchorgen"]["psnr"]
    assert scored["results"]["anchorgen"]["seconds"] == index["variants"]["anchorgen"]["seconds"]
    with pytest.raises(InputError, match="drop --ablations"):
        evaluate(model, dataset, tmp_path / "y", FAST, renders=tmp_path / "r", ablations=True)
    frame = next((tmp_path / "r" / "00").iterdir())
    frame.unlink()  # a missing frame is refused, not silently scored
    with pytest.raises(InputError, match="frames, the held-out part has"):
        evaluate(model, dataset, tmp_path / "x", FAST, renders=tmp_path / "r", progress=False)


def test_bfloat16_generation_matches_float32(identity, tmp_path):
    """dtype=bfloat16 (the CUDA default) runs the same pipeline and stays close to float32."""
    model, dataset = identity
    videos = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.mp4"
        config = FAST.replace(dtype=dtype, visible_label=False)
        generate(model, dataset, out, config, dataset=dataset, progress=False)
        videos[dtype] = _frames(out).astype(np.float64)
    mse = np.mean((videos["float32"] - videos["bfloat16"]) ** 2)
    assert 0 < mse and 10 * np.log10(255**2 / mse) > 25  # rounding differs, content does not


def test_speed_levers_keep_the_video(identity, tmp_path, monkeypatch):
    """generate applies channels_last and compile to both models; channels_last changes the
    memory layout only, and compile is validated and applied lazily."""
    from anchorgen.generate import Identity

    model, dataset = identity
    applied = []
    real_optimize = Identity.optimize

    def recording_optimize(self, config):
        real_optimize(self, config)
        applied.append(
            [
                m.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
                for m in (self.body, self.face)
            ]
        )

    monkeypatch.setattr(Identity, "optimize", recording_optimize)
    videos = {}
    for name, config in (("plain", FAST), ("channels_last", FAST.replace(channels_last=True))):
        out = tmp_path / f"{name}.mp4"
        generate(
            model,
            dataset,
            out,
            config.replace(visible_label=False),
            dataset=dataset,
            progress=False,
        )
        videos[name] = _frames(out).astype(np.float64)
    assert applied == [[False, False], [True, True]]
    mse = np.mean((videos["plain"] - videos["channels_last"]) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) > 40
    loaded = Identity.load(model, dataset=dataset)
    real_optimize(loaded, FAST.replace(compile="default"))
    assert loaded.body.unet._compiled_call_impl is not None and loaded.body.static_batch_shapes
    assert loaded.face.controlnet._compiled_call_impl is not None
    with pytest.raises(ValueError, match="compile"):
        GenerateConfig(compile="max-autotune")


def test_a_skeleton_identity_draws_its_conditions_and_refuses_mesh_motion(identity, tmp_path):
    from anchorgen.generate import Identity, load_motion
    from anchorgen.prepare.skeleton import BODY_LINES, draw_skeleton

    _model, dataset = identity
    torch.manual_seed(0)
    body = tiny_model_config(temporal=True).replace(image_size=128, condition_style="skeleton")
    StructureGuidedDiffusion.build(body).save_pretrained(tmp_path / "skeleton" / "body")
    person = Identity.load(tmp_path / "skeleton", dataset=dataset)
    assert person.condition_style == "skeleton"
    data = PreparedDataset(dataset)
    held_out = load_motion(dataset, person, FAST, tmp_path, progress=False)
    first = data.split_range("holdout").start
    assert np.array_equal(held_out.conditions[0], draw_skeleton(data.landmarks.frame(first), 128))
    data.landmarks.slice(0, 6).save(tmp_path / "motion.npz")
    (tmp_path / "landmarks").mkdir()
    driven = load_motion(
        tmp_path / "motion.npz", person, FAST, tmp_path / "landmarks", progress=False
    )
    shoulders = (np.asarray(driven.conditions) == BODY_LINES[(11, 12)]).all(-1)  # (6, H, W)
    assert shoulders.any((1, 2)).all()  # every frame drawn as a skeleton, not a mesh
    folder = tmp_path / "renders"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"{i}.png", data.render(i))
    with pytest.raises(InputError, match="skeleton conditions"):
        load_motion(folder, person, FAST, tmp_path, progress=False)
