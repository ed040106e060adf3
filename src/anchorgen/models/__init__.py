"""Structure-guided diffusion models (SGDM), appearance encoders, codecs, face SGDM."""
