"""Inference only: window schedule (pure), the anchor video pipeline, face enhancement."""
