"""The exception types of the data layer: bad dataset input, and a device decoder that cannot run."""


class DataError(ValueError):
    """Bad dataset input; the message always names the file or path at fault."""


class DecoderUnavailable(RuntimeError):
    """The device decoder cannot run here (the message says why)."""
