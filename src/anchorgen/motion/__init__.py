"""Motion sources: driver-video retargeting, SMPL-X parameters, speech-to-motion."""
