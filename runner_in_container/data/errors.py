"""The exception types of the data layer (bad dataset input, a device decoder that cannot run) and the check
that refuses a bad setting of its loaders."""


class DataError(ValueError):
    """Bad dataset input; the message always names the file or path at fault."""


class DecoderUnavailable(RuntimeError):
    """The device decoder cannot run here (the message says why)."""


def require_positive(owner: str, **settings: int) -> None:
    """ValueError naming ``owner`` and the setting when one of ``settings`` is below 1."""
    for field, value in settings.items():
        if value < 1:
            raise ValueError(f"{owner}: {field} must be at least 1, got {value}")
