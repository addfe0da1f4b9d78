"""The one error a vendor descriptor raises."""

from runner_in_container.discovery import PluginError


class VendorError(PluginError):
    """A vendor descriptor is malformed or a vendor name is unknown (message names it)."""
