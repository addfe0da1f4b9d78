"""Progress bars for the long steps of a bundle (hashing, compressing, copying), in bytes."""

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def byte_bars(console: Console) -> Progress:
    """A rich Progress whose tasks count bytes; use it as a context manager."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
