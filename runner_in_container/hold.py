"""Holding a run at its start until a file exists: how a test catches a job in a state by construction.

The knob ``hold_until=PATH``, given with the toolkit options (``toolkit_options`` in a cluster file,
``--toolkit-option`` on the command line; PATH relative to ``--out``, the job's results folder), makes the
runner, right after its ``start`` event, enter stage ``hold`` and wait until PATH exists, then go on as
usual. A test so keeps a job running (in its container, RUNNING under Slurm) for as long as it needs, and
lets it go on by creating the file. The time held lies inside ``e2e_time`` and outside every throughput
window; the result's warnings say how long it was.
"""

import os
import time
from typing import Any, Callable, Mapping, Optional

from .contract import HOLD_KNOB

POLL_S = 0.1


def hold(options: Mapping[str, str], out: str, enter: Callable[..., Any]) -> Optional[str]:
    """Wait while ``options`` names a hold file that does not exist yet; a warning for the result, or None.

    ``enter(stage, **fields)`` announces the stage (the runner's progress event).
    """
    name = options.get(HOLD_KNOB)
    if not name:
        return None
    path = os.path.join(out, name)
    enter("hold", path=path)
    started = time.monotonic()
    while not os.path.exists(path):
        time.sleep(POLL_S)
    return "held %.1f s at the start until %s existed (%s): e2e_time includes it" % (
        time.monotonic() - started,
        path,
        HOLD_KNOB,
    )
