"""Decoding processes spawned first thing, before the runner imports torch: their own imports (torch and
torchvision, seconds each) then run beside the runner's instead of after them.

Only where the command line settles it: ``--device cuda`` or ``cuda:N`` given and ``--decoder`` not pil,
with more than one decoding process (``--decode-processes``, else one per CPUs as process_count.py says).
The runner's set-up (cli.py) takes them when its device and decoding processes turn out the same, and stops
them otherwise; bad input ends the runner, and its daemonic processes with it.
"""

import argparse
import re
from typing import List, NoReturn, Optional, Tuple

from .contract import OPTION
from .data.process_count import decoding_processes, usable_cpus
from .data.spawned import Spawned


class _Quiet(argparse.ArgumentParser):
    """A parser that raises where argparse would print and exit: the runner's own parser says it."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def wanted(argv: List[str]) -> Optional[Tuple[str, int]]:
    """(device, processes) that the runner's command line ``argv`` settles already, None where it does not:
    no CUDA device named, the PIL decoder, one process, help asked for, or anything the runner's parser
    will refuse."""
    if "-h" in argv or "--help" in argv:
        return None
    parser = _Quiet(add_help=False, allow_abbrev=False)
    for name in ("device", "decoder", "decode_processes"):
        parser.add_argument(OPTION[name].flag, dest=name)
    try:
        known, _ = parser.parse_known_args(argv)
        requested = int(known.decode_processes or 0)
    except ValueError:
        return None
    match = re.fullmatch(r"cuda(?::(\d+))?", known.device or "")
    if match is None or known.decoder not in (None, "auto", "nvjpeg") or requested < 0:
        return None
    processes = decoding_processes(requested, usable_cpus())
    return ("cuda:%s" % (match.group(1) or 0), processes) if processes > 1 else None


def spawn(argv: List[str]) -> Optional[Spawned]:
    """The decoding processes that ``argv`` settles, spawned now; None where it settles none."""
    settled = wanted(argv)
    if settled is None:
        return None
    device, processes = settled
    return Spawned(processes, device=device)
