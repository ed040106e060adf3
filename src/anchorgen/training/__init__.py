"""One training recipe for every preset: setup / train / save_checkpoint / cleanup."""
