"""LoadGen's logs of a job fetched beside its result.json: the files its result lists (``mlperf.log_files``),
each name checked against the runner's layout (``mlperf/<run>/<one of LoadGen's kept files>``, so that no
name reaches outside the job's folder) and each bounded in size, like the result itself."""

import posixpath
import re
from pathlib import Path
from typing import List

from orchestrator.outcome import Stage, StageFailure
from orchestrator.safeio.text import one_line
from orchestrator.transport.base import Transport, TransportError
from runner_in_container import schema
from runner_in_container.mlperf import logs

#: where the runner keeps LoadGen's logs, relative to the job's folder
LOG_PATH = re.compile(r"^mlperf/[A-Za-z0-9_-]{1,64}/(%s)$" % "|".join(re.escape(name) for name in logs.KEPT))
#: the largest log fetched (an accuracy log of 50,000 samples is about 5 MiB)
MAX_LOG_BYTES = 256 << 20


def fetch(
    transport: Transport, remote_dir: str, job_dir: Path, result: schema.Result, timeout: float
) -> List[str]:
    """Fetch the logs ``result`` lists from ``remote_dir`` into ``job_dir``; their names. StageFailure
    (collect) naming a file that is not where the runner keeps its logs, or that could not be fetched."""
    if result.mlperf is None:
        return []
    for name in result.mlperf.log_files:
        if not LOG_PATH.match(name):
            raise StageFailure(
                Stage.COLLECT, one_line("LoadGen log %r refused: not mlperf/<run>/<log file>" % name)
            )
        try:
            transport.get(posixpath.join(remote_dir, name), job_dir / name, MAX_LOG_BYTES, timeout=timeout)
        except TransportError as exc:
            raise StageFailure(
                Stage.COLLECT, one_line("LoadGen log %s not fetched: %s" % (name, exc))
            ) from None
    return list(result.mlperf.log_files)
