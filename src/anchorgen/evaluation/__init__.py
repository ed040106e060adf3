"""Metrics (pure functions), baselines and the evaluation report.

- :mod:`~anchorgen.evaluation.metrics`: PSNR, SSIM, LMD face/body/hand, identity similarity
  (dlib), warping error, head-pose / expression distances, E-FID, MediaPipe detection.
- :mod:`~anchorgen.evaluation.frechet`: Frechet distance, FID (Inception-v3) and FVD (I3D)
  from local safetensors weights, "not computed" without them.
- :mod:`~anchorgen.evaluation.baselines`: nearest-pose retrieval, repeated reference.
- :mod:`~anchorgen.evaluation.report`: the markdown metrics table.
"""
