"""The one exception type of the data layer."""


class DataError(ValueError):
    """Bad dataset input; the message always names the file or path at fault."""
