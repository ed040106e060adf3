"""From a raw clip to an identity dataset: landmarks, smoothing, crop, renders, face, matte."""
