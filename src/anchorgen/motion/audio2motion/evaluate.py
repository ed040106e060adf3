"""Offline measurements of speech-driven motion: lip sync, diversity, gesture statistics.

- Lip-sync proxy: Pearson correlation between the mouth opening (inner-lip gap / eye-corner
  distance) and the speech envelope (per-frame RMS, smoothed), maximised over lags of
  -``max_lag`` .. +``max_lag`` frames; compared with the same number on the real clip.
- Diversity: mean pairwise distance between sequences generated with different seeds, in
  shoulder-width units.
- Gesture statistics: wrist speed distribution (shoulder widths per second), head roll /
  yaw-proxy / horizontal standard deviations and head roll / yaw-proxy mean speeds (per
  second: jitter shows as speed out of proportion to the spread), generated vs. real.
- Condition check: the share of the lips that the body hides in the face-space condition
  renders of a motion (``condition_mouth_cover``); a render cannot follow a hidden mouth.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.audio import speech_envelope
from anchorgen.motion.audio2motion.representation import _face_frame, _shoulder_frame, mouth_opening
from anchorgen.motion.audio2motion.sample import HEAD_DRIFT_DEFAULT


def lagged_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 2) -> tuple[float, int]:
    """Max over lags of Pearson r between a[t] and b[t + lag]; returns (r, lag)."""
    best = (-np.inf, 0)
    for lag in range(-max_lag, max_lag + 1):
        x = a[max(0, -lag) : len(a) - max(0, lag)]
        y = b[max(0, lag) : len(b) - max(0, -lag)]
        n = min(len(x), len(y))
        x, y = x[:n], y[:n]
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
            continue
        r = float(np.corrcoef(x[ok], y[ok])[0, 1])
        best = max(best, (r, lag))
    return (float("nan"), 0) if not np.isfinite(best[0]) else best


def lip_sync_score(
    seq: LandmarkSequence, waveform: np.ndarray, max_lag: int = 2
) -> dict[str, float]:
    """Correlation of mouth opening with the speech envelope (lag in frames, + = mouth later)."""
    envelope = speech_envelope(waveform, seq.fps, len(seq), smooth=3)
    r, lag = lagged_correlation(envelope, mouth_opening(seq), max_lag)
    return {"lip_envelope_corr": r, "lag_frames": lag}


def motion_diversity(sequences: list[LandmarkSequence]) -> float:
    """Mean pairwise RMS distance of face, body and hand points, in shoulder widths."""

    def flat(seq: LandmarkSequence) -> np.ndarray:
        width = np.nanmean(_shoulder_frame(seq.pose.astype(np.float64))[1])
        pts = np.concatenate([seq.face, seq.pose[:, 11:23], seq.left_hand, seq.right_hand], axis=1)[
            ..., :2
        ]
        return pts.astype(np.float64) / width

    flats = [flat(s) for s in sequences]
    dists = []
    for a, b in itertools.combinations(flats, 2):
        diff = (a - b) ** 2
        dists.append(float(np.sqrt(np.nanmean(diff))))
    return float(np.mean(dists)) if dists else float("nan")


def gesture_statistics(seq: LandmarkSequence) -> dict[str, np.ndarray | float]:
    """Wrist speeds (shoulder widths / s); head roll (rad), nose yaw-proxy and face centre x
    (shoulder widths) stds; mean absolute roll and yaw-proxy speeds (per second)."""
    pose = seq.pose.astype(np.float64)
    width = np.nanmean(_shoulder_frame(pose)[1])
    speeds = []
    for idx, hand in ((15, "left_hand"), (16, "right_hand")):
        wrist = pose[:, idx, :2] / width
        v = np.linalg.norm(np.diff(wrist, axis=0), axis=1) * seq.fps
        visible = seq.present[hand][1:] & seq.present[hand][:-1]
        speeds.append(v[visible & np.isfinite(v)])
    centre, scale, roll = _face_frame(seq.face.astype(np.float64))
    yaw_proxy = (seq.face[:, 1, 0] - centre[:, 0]) / scale  # nose tip offset from eye centre
    return {
        "wrist_speed": np.concatenate(speeds),
        "head_roll_std": float(np.nanstd(roll)),
        "head_yaw_proxy_std": float(np.nanstd(yaw_proxy)),
        "head_x_std": float(np.nanstd(centre[:, 0] / width)),
        "head_roll_speed": float(np.nanmean(np.abs(np.diff(roll)))) * seq.fps,
        "head_yaw_proxy_speed": float(np.nanmean(np.abs(np.diff(yaw_proxy)))) * seq.fps,
    }


def gesture_distance(generated: LandmarkSequence, real: LandmarkSequence) -> dict[str, float]:
    """Gap between generated and real gesture statistics.

    ``wrist_speed_w1``: 1-D Wasserstein distance of the wrist-speed distributions;
    the others are generated/real ratios of standard deviations (1 = same).
    """
    from scipy.stats import wasserstein_distance

    g, r = gesture_statistics(generated), gesture_statistics(real)
    out = {
        "wrist_speed_w1": float(wasserstein_distance(g["wrist_speed"], r["wrist_speed"]))
        if len(g["wrist_speed"]) and len(r["wrist_speed"])
        else float("nan"),
        "wrist_speed_mean_gen": float(np.mean(g["wrist_speed"]))
        if len(g["wrist_speed"])
        else float("nan"),
        "wrist_speed_mean_real": float(np.mean(r["wrist_speed"]))
        if len(r["wrist_speed"])
        else float("nan"),
    }
    for key in (
        "head_roll_std",
        "head_yaw_proxy_std",
        "head_x_std",
        "head_roll_speed",
        "head_yaw_proxy_speed",
    ):
        out[f"{key}_gen"] = float(g[key])
        out[f"{key}_real"] = float(r[key])
    return out


def mouth_curve_correlation(
    generated: LandmarkSequence, real: LandmarkSequence, max_lag: int = 2
) -> float:
    """Max-lag Pearson r between generated and real mouth-opening curves (held-out check)."""
    n = min(len(generated), len(real))
    return lagged_correlation(mouth_opening(real)[:n], mouth_opening(generated)[:n], max_lag)[0]


def evaluate_audio2motion(
    model,
    identity: LandmarkSequence,
    heldout: LandmarkSequence,
    heldout_waveform: np.ndarray,
    drivers: dict[str, np.ndarray],
    real_clip: tuple[LandmarkSequence, np.ndarray] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    num_inference_steps: int = 25,
    guidance_scale: float = 2.0,
    smooth_frames: float = 2.0,
    head_drift: float = HEAD_DRIFT_DEFAULT,
) -> dict:
    """All the numbers of the audio-to-motion benchmark.

    identity: the identity's training landmarks; heldout / heldout_waveform: held-out frames
    of the identity and their speech; drivers: name -> unseen speech waveform; real_clip:
    the identity's whole clip and speech (for the real lip-sync reference).
    """
    import torch

    from anchorgen.motion.audio2motion.sample import motion_from_features, speech_inputs

    fps = identity.fps
    results: dict = {
        "smooth_frames": smooth_frames,
        "seeds": list(seeds),
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "head_drift": head_drift,
    }
    if real_clip is not None:
        results["real_clip"] = lip_sync_score(real_clip[0], real_clip[1])
    results["real_heldout"] = lip_sync_score(heldout, heldout_waveform)

    def run(features, n: int, gate: np.ndarray | None, seed: int) -> LandmarkSequence:
        return motion_from_features(
            model,
            features,
            n,
            identity,
            fps,
            gate,
            seed,
            num_inference_steps,
            guidance_scale,
            progress=False,
            smooth_frames=smooth_frames,
            head_drift=head_drift,
        )

    for name, waveform in drivers.items():
        features, n, gate = speech_inputs(model, waveform, fps)
        seqs = [run(features, n, gate, s) for s in seeds]
        raw = [run(features, n, None, s) for s in seeds]
        gestures = [gesture_distance(s, identity) for s in seqs]
        results[name] = {
            "lip_envelope_corr": float(
                np.mean([lip_sync_score(s, waveform)["lip_envelope_corr"] for s in seqs])
            ),
            "lip_envelope_corr_no_gate": float(
                np.mean([lip_sync_score(s, waveform)["lip_envelope_corr"] for s in raw])
            ),
            "diversity": motion_diversity(seqs),
            "gesture": {k: float(np.nanmean([g[k] for g in gestures])) for k in gestures[0]},
        }
    features, n, gate = speech_inputs(model, heldout_waveform, fps)
    n = min(n, len(heldout))
    gate = gate[:n]
    rng = np.random.default_rng(0)
    perm = torch.from_numpy(rng.permutation(n))
    shuffled = features.clone()
    shuffled[:n] = features[:n][perm]
    held: dict[str, list[float]] = {
        "audio": [],
        "audio_no_gate": [],
        "shuffled": [],
        "shuffled_no_gate": [],
    }
    for s in seeds:
        for key, feats, g in (
            ("audio", features, gate),
            ("audio_no_gate", features, None),
            ("shuffled", shuffled, gate[perm.numpy()]),
            ("shuffled_no_gate", shuffled, None),
        ):
            seq = run(feats, n, g, s)
            held[key].append(mouth_curve_correlation(seq, heldout.slice(0, n)))
    results["heldout_mouth_corr"] = {k: float(np.mean(v)) for k, v in held.items()}
    results["heldout_mouth_corr_per_seed"] = held
    return results


def evaluate_run(
    run_dir: str | Path,
    clip: str | Path,
    clip_landmarks: str | Path,
    drivers: list[str | Path],
    train_seconds: float = 16.0,
    device: str = "cpu",
    **kwargs,
) -> dict:
    """``evaluate_audio2motion`` from files: a run, the identity's clip (speech source) and
    its full landmark track (the part after ``train_seconds`` is held out), unseen speech.
    """
    from anchorgen.motion.audio import SAMPLE_RATE, load_speech
    from anchorgen.motion.audio2motion.train import load_run

    model, identity = load_run(run_dir)
    model.to(device)
    full = LandmarkSequence.load(clip_landmarks)
    waveform = load_speech(clip)
    split = round(train_seconds * full.fps)
    heldout = full.slice(split, len(full))
    heldout_waveform = waveform[int(split * SAMPLE_RATE / full.fps) :]
    speech = {Path(p).stem: load_speech(p) for p in drivers}
    return evaluate_audio2motion(
        model, identity, heldout, heldout_waveform, speech, real_clip=(full, waveform), **kwargs
    )


OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)  # fmt: skip
"""Face-mesh indices of the outer lip contour, walked as one polygon."""


def condition_mouth_cover(
    seq: LandmarkSequence, face_size: int = 256, progress: bool = True
) -> np.ndarray:
    """(T,) share of each frame's lips that the body hides in its face-space condition render.

    Each face condition is rendered as ``generate`` renders a landmark motion
    (``clip_face_affines``, ``landmark_renders``), once with and once without the pose; a
    pixel inside the outer-lip contour that differs is covered. The identity's own frames
    score 0; a face placed behind the neck scores about 0.97, and the models then render a
    mouth they were not shown (docs/BENCHMARKS.md, issue 7). NaN where there is no face.
    """
    import dataclasses

    import cv2
    from tqdm import tqdm

    from anchorgen.prepare.face import apply_affine
    from anchorgen.prepare.pipeline import clip_face_affines, landmark_renders

    affines = clip_face_affines(seq, face_size)
    no_body = dataclasses.replace(seq, present={**seq.present, "pose": np.zeros(len(seq), bool)})
    cover = np.full(len(seq), np.nan)
    for i in tqdm(range(len(seq)), desc="mouth cover", unit="frame", disable=not progress):
        if not seq.present["face"][i]:
            continue
        with_body = landmark_renders(seq, i, affines[i], face_size, face_size)[1]
        face_only = landmark_renders(no_body, i, affines[i], face_size, face_size)[1]
        lips = apply_affine(affines[i], seq.face[i, list(OUTER_LIPS)])
        inside = np.zeros((face_size, face_size), np.uint8)
        cv2.fillPoly(inside, [np.round(lips - 0.5).astype(np.int32)], 1)
        changed = np.abs(with_body.astype(np.int16) - face_only).sum(axis=-1) > 6
        cover[i] = float(changed[inside > 0].mean()) if inside.any() else np.nan
    return cover


def video_lip_sync(
    video: str | Path, upscale: int = 4, max_lag: int = 2, progress: bool = True
) -> dict[str, float]:
    """The lip-sync proxy measured on a rendered video against its own muxed speech.

    The face mesh is tracked in the frames (upscaled ``upscale`` times: a 256 px anchor's face
    is about 40 px wide), so this scores what a viewer sees, not the motion that drove it.
    The mouth opening is a ratio of distances, so a rolled head does not change it: frames of
    the identity and of a render turned by up to +-0.15 rad keep the tracked series (r >=
    0.975) and the score (docs/BENCHMARKS.md, issue 7).
    """
    import cv2

    from anchorgen.evaluation.metrics import detect_landmarks
    from anchorgen.io.video import iter_frames, probe_video
    from anchorgen.motion.audio import load_speech

    info = probe_video(video)
    frames = (
        cv2.resize(frame, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
        for frame in iter_frames(video)
    )
    seq = detect_landmarks(frames, fps=info.fps, progress=progress)
    score = lip_sync_score(seq, load_speech(video), max_lag)
    score["frames_with_face"] = int(np.isfinite(mouth_opening(seq)).sum())
    score["frames"] = len(seq)
    return score
