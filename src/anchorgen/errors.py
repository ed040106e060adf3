"""Exceptions the CLI turns into one-line messages and a non-zero exit."""


class AnchorgenError(Exception):
    """Base class: a user-facing error with a message that says what to do."""


class ConfigError(AnchorgenError):
    """A config file or override is invalid."""


class InputError(AnchorgenError):
    """An input file (video, audio, image, dataset, model run) cannot be used."""
