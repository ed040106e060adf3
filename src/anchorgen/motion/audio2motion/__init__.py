"""Speech-to-motion: a small diffusion transformer that turns speech into landmark motion.

Public API::

    model, identity = load_run(run_dir)            # or Audio2Motion.from_pretrained(run_dir / "model")
    seq = generate_motion(model, "speech.wav", identity, fps=25, seed=0)
    # head drift drawn from the identity's own track is added (head.py); head_drift=0 turns it off
    run_dir = train_audio2motion(Audio2MotionConfig(...))
"""

from anchorgen.motion.audio2motion.evaluate import (
    evaluate_audio2motion,
    evaluate_run,
    gesture_distance,
    gesture_statistics,
    lip_sync_score,
    motion_diversity,
    mouth_curve_correlation,
)
from anchorgen.motion.audio2motion.model import Audio2Motion
from anchorgen.motion.audio2motion.representation import (
    decode,
    encode,
    identity_frame,
    mouth_opening,
)
from anchorgen.motion.audio2motion.sample import generate_motion, window_starts
from anchorgen.motion.audio2motion.train import (
    PRESETS,
    Audio2MotionConfig,
    load_run,
    train_audio2motion,
)

__all__ = [
    "PRESETS",
    "Audio2Motion",
    "Audio2MotionConfig",
    "decode",
    "encode",
    "evaluate_audio2motion",
    "evaluate_run",
    "generate_motion",
    "gesture_distance",
    "gesture_statistics",
    "identity_frame",
    "lip_sync_score",
    "load_run",
    "motion_diversity",
    "mouth_curve_correlation",
    "mouth_opening",
    "train_audio2motion",
    "window_starts",
]
