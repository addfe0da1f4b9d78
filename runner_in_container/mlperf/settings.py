"""What a LoadGen run asks for: the scenario, its durations (short or compliant) and the Server's target and
bound, from the runner's options (contract.OPTIONS); the one place the defaults and LoadGen's names live.

Standard library only: the runner checks LoadGen is importable (``require``) before anything runs.
"""

import importlib
from typing import Any, Mapping, NamedTuple, Optional

from ..contract import LOADGEN_SCENARIOS

#: the package that provides ``mlperf_loadgen``
PACKAGE = "mlcommons-loadgen"
MODULE = "mlperf_loadgen"
#: the runner's scenario -> LoadGen's TestScenario name (and mlperf.conf's)
LOADGEN_NAMES = {
    "offline": "Offline",
    "server": "Server",
    "singlestream": "SingleStream",
    "multistream": "MultiStream",
}
#: the scenarios whose queries LoadGen issues one at a time, each once the one before is complete
STREAM_SCENARIOS = ("singlestream", "multistream")
#: the benchmark whose rules mlperf.conf gives (Server p99 <= 15 ms, MultiStream 8 samples a query, ...)
RULES_MODEL = "resnet50"
#: a short run's least duration, and LoadGen's own minimum (mlperf.conf) for a compliant one
SHORT_DURATION_S = 10.0
COMPLIANT_DURATION_S = 600.0
#: mlperf.conf's Server latency bound (p99) for resnet50
SERVER_LATENCY_MS = 15.0
#: how long the Server batcher waits for a batch to fill after its first sample arrived
SERVER_BATCH_WAIT_MS = 1.0
#: Server runs the QPS search makes at most, and the gap between the highest good and lowest bad QPS at
#: which it stops
SEARCH_RUNS = 7
SEARCH_TOLERANCE = 0.05
#: the most samples held on the device at once (mlperf.conf's performance_sample_count for resnet50)
PERFORMANCE_SAMPLES = 1024


class MissingLoadGen(RuntimeError):
    """LoadGen is not importable here (the message names the package)."""


class Settings(NamedTuple):
    """A LoadGen run's settings (the runner's options, defaults filled in)."""

    scenario: str  # one of contract.LOADGEN_SCENARIOS
    compliant: bool
    duration_s: float  # the least duration of each performance run
    server_target_qps: Optional[float]  # the search's first target; None: the measured throughput
    server_latency_ms: float

    @property
    def loadgen_name(self) -> str:
        return LOADGEN_NAMES[self.scenario]

    def compliance(self) -> Optional[str]:
        """Why the runs are not compliant MLPerf runs, in plain words; None when they are."""
        reasons = []
        if not self.compliant:
            reasons.append(
                "short runs (at least %g s each; LoadGen's minimum is %g s)"
                % (self.duration_s, COMPLIANT_DURATION_S)
            )
        if self.scenario == "server" and self.server_latency_ms != SERVER_LATENCY_MS:
            reasons.append(
                "a latency bound of %g ms, not mlperf.conf's %g ms"
                % (self.server_latency_ms, SERVER_LATENCY_MS)
            )
        return "not compliant: " + "; ".join(reasons) if reasons else None


def from_options(options: Mapping[str, Any]) -> Optional[Settings]:
    """The LoadGen settings of a run with these options (by name, parsed); None for a flagperf run."""
    scenario = options.get("scenario")
    if scenario not in LOADGEN_SCENARIOS:
        return None
    compliant = options.get("mlperf") == "compliant"
    duration = COMPLIANT_DURATION_S if compliant else options.get("mlperf_duration_s") or SHORT_DURATION_S
    return Settings(
        scenario=scenario,
        compliant=compliant,
        duration_s=float(duration),
        server_target_qps=options.get("server_target_qps"),
        server_latency_ms=float(options.get("server_latency_ms") or SERVER_LATENCY_MS),
    )


def require() -> Any:
    """The ``mlperf_loadgen`` module; MissingLoadGen naming the package to install when it is absent."""
    try:
        return importlib.import_module(MODULE)
    except ImportError as exc:
        raise MissingLoadGen(
            "the MLPerf scenarios need the %s package (import %s failed: %s)" % (PACKAGE, MODULE, exc)
        ) from None
