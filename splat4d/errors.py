"""The few exception types users see. The CLI turns each into one line and exit code 2."""


class Splat4DError(Exception):
    """Base class of user-facing errors (bad input, missing files, bad configs)."""


class DatasetError(Splat4DError):
    """A dataset folder or file is missing, unreadable or inconsistent."""


class ConfigError(Splat4DError):
    """A configuration value is invalid or inconsistent."""


class BitstreamError(Splat4DError):
    """A compressed bitstream is corrupt, truncated or of an unknown version."""


class CheckpointError(Splat4DError):
    """A checkpoint is corrupt or belongs to another method."""


class WeightsNotFound(Splat4DError):
    """Pretrained weights are missing; the message says what to download and where to put it."""
