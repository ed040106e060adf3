"""anchorgen: diffusion-based personal avatar video (Make-Your-Anchor+ and relatives)."""

__version__ = "0.1.0"
