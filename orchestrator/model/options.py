"""A job's toolkit options as part of what it is: the options that can change what it measures name the job
(``plan.job_id``), tell two case entries' jobs apart (``Cluster``) and label its rows in every report.

Those are the options as the cluster file gives them, sorted by name, less the runner's hold knob
(``contract.HOLD_KNOB``: it holds the run at its start, nothing measured) and a knob that the contract gives
to another toolkit (a toolkit list's entry passes every option to each of its jobs; the others' go unread).
A value equal to its knob's default still counts: a default may change, a stored run's setting does not.
"""

import hashlib
import re
from typing import Iterable, Sequence, Tuple

from runner_in_container.contract import HOLD_KNOB, KNOB

#: a job's options, (name, value) sorted by name
Options = Tuple[Tuple[str, str], ...]

#: the longest options part of a job id written out; a longer one is a hash (ids.ID_RE: 128 in all)
MAX_ID_PART = 64
#: the characters a value may keep in a job id (a file name, a docker name; no '.', which separates the
#: pairs, so that two sets of options never read alike); others make it a hash
ID_VALUE_RE = re.compile(r"^[A-Za-z0-9_-]*$")
#: how a job id names options it cannot write out: this prefix and the first hex digits of their sha256
HASHED_PREFIX, HASHED_DIGITS = "opts-", 12


def measured(toolkit: str, options: Iterable[Sequence[str]]) -> Options:
    """The (name, value) pairs of ``options`` (a mapping's items, or a stored spec's pairs) that a job of
    ``toolkit`` is measured with, sorted by name."""
    pairs = {str(name): str(value) for name, value in options}
    return tuple(
        (name, value)
        for name, value in sorted(pairs.items())
        if name != HOLD_KNOB and (name not in KNOB or KNOB[name].toolkit in (None, toolkit))
    )


def id_part(options: Options) -> str:
    """The options as a job id's last part before its run: "cudnn_fused_benchmark-1.cudnn_fused_graph-0";
    "opts-<sha256 prefix>" where a value has a character outside [A-Za-z0-9_-] or the part would be longer
    than MAX_ID_PART; "" for none."""
    written = ".".join("%s-%s" % pair for pair in options)
    if len(written) <= MAX_ID_PART and all(ID_VALUE_RE.match(value) for _, value in options):
        return written
    canonical = "\n".join("%s=%s" % pair for pair in options)
    return HASHED_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:HASHED_DIGITS]


def shown(options: Options) -> str:
    """ "cudnn_fused_benchmark=1, cudnn_fused_graph=0" (as the cluster file says them); "" for none."""
    return ", ".join("%s=%s" % pair for pair in options)


def labelled(toolkit: str, options: Iterable[Sequence[str]]) -> str:
    """How the reports and ``plan`` name a job's toolkit: "cudnn_fused (cudnn_fused_benchmark=1)", or the
    toolkit alone where it is measured with no option."""
    return named(toolkit, shown(measured(toolkit, options)))


def named(toolkit: str, said: str) -> str:
    """``toolkit`` with its options as ``shown`` says them: "cudnn_fused (cudnn_fused_benchmark=1)"; the
    toolkit alone where ``said`` is empty."""
    return "%s (%s)" % (toolkit, said) if said else toolkit
