"""Input/output: video and audio decode/encode (PyAV), atomic writes, the dataset format."""
