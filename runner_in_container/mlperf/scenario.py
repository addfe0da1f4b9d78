"""A LoadGen scenario over the infer toolkit's compiled model: the performance run (Server: the QPS search's
runs), then the accuracy run; the result's ``mlperf`` section, LoadGen's logs kept under ``OUT/mlperf/``.

LoadGen's rules are mlperf.conf's for resnet50 (``TestSettings.FromConfig``); a short run lowers only the
least duration and query count (``settings.compliance`` says so in the result). LoadGen needs to know
roughly how fast the model is to generate enough queries: Offline's expected QPS and the stream scenarios'
expected latency come from timing the compiled model on a batch, with a margin.
"""

import itertools
import math
import os
import statistics
import time
from importlib import metadata
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import torch

from ..data import Dataset
from ..data.preprocess import Preprocessing
from ..device import Device
from ..protocol import STEP_ACCURACY, STEP_PERFORMANCE, STEP_SEARCH, STEP_TIME_MODEL
from . import logs, search
from .settings import (
    PACKAGE,
    PERFORMANCE_SAMPLES,
    RULES_MODEL,
    SEARCH_RUNS,
    SEARCH_TOLERANCE,
    SERVER_BATCH_WAIT_MS,
    STREAM_SCENARIOS,
    Settings,
    require,
)
from .sut import BatchingSut, Forward, InlineSut, SampleLibrary, Sut

#: a short run's least query count (its duration decides)
SHORT_MIN_QUERIES = 1
#: LoadGen's expectations set this much on the safe side of the timed speed (more queries generated than run)
MARGIN = 4.0
#: model calls timed for that speed (the median is taken)
TIMED_CALLS = 5


class Model(NamedTuple):
    """The compiled model LoadGen's queries run through: the infer toolkit's callable at its batch size, and
    the input it takes."""

    fn: Forward
    batch_size: int
    dtype: torch.dtype
    channels_last: bool


class Speed(NamedTuple):
    """The compiled model's time per call at the batch size, and its samples per second."""

    batch_s: float
    samples_per_s: float


def time_model(fn: Forward, example: torch.Tensor, dev: Device) -> Speed:
    """The median of TIMED_CALLS calls of ``fn`` on ``example``, each synchronised."""
    times = []
    with torch.no_grad():
        for _ in range(TIMED_CALLS):
            start = time.perf_counter()
            fn(example)
            dev.synchronize()
            times.append(time.perf_counter() - start)
    batch_s = max(statistics.median(times), 1e-6)
    return Speed(batch_s, example.shape[0] / batch_s)


class Runner:
    """LoadGen's test runs over one system under test and sample library, their logs under ``root``."""

    def __init__(self, lg: Any, sut: Sut, qsl: Any, test: Any, root: str, out: str) -> None:
        self.lg, self.sut, self.qsl, self.test, self.root, self.out = lg, sut, qsl, test, root, out
        self.files: List[str] = []

    @staticmethod
    def test_settings(
        lg: Any, settings: Settings, root: str, speed: Speed, batch_size: int, samples: int
    ) -> Any:
        """LoadGen's TestSettings for every run: mlperf.conf's rules for the scenario (read once: LoadGen
        logs an error for each further conf file), then this run's durations and expectations."""
        user_conf = os.path.join(root, "user.conf")  # empty: mlperf.conf's rules as they are
        os.makedirs(root, exist_ok=True)
        open(user_conf, "w").close()
        test = lg.TestSettings()
        test.FromConfig(user_conf, RULES_MODEL, settings.loadgen_name)
        test.scenario = getattr(lg.TestScenario, settings.loadgen_name)
        if not settings.compliant:
            test.min_duration_ms = int(settings.duration_s * 1000)
            test.min_query_count = SHORT_MIN_QUERIES
        test.performance_sample_count_override = samples
        test.offline_expected_qps = speed.samples_per_s * MARGIN
        test.single_stream_expected_latency_ns = max(1, int(speed.batch_s * 1e9 / MARGIN))
        calls = math.ceil(test.multi_stream_samples_per_query / batch_size)
        test.multi_stream_expected_latency_ns = max(1, int(calls * speed.batch_s * 1e9 / MARGIN))
        test.server_target_latency_ns = int(settings.server_latency_ms * 1e6)
        return test

    def run(self, name: str, accuracy: bool, qps: float) -> Dict[str, Any]:
        """One LoadGen test (accuracy or performance; Server at ``qps``); its detail log's entries. Its logs
        stay in ``root/name`` (LoadGen's trace, and the empty accuracy log of a performance run, dropped)."""
        test = self.test
        test.mode = self.lg.TestMode.AccuracyOnly if accuracy else self.lg.TestMode.PerformanceOnly
        test.server_target_qps = qps
        folder = os.path.join(self.root, name)
        os.makedirs(folder, exist_ok=True)
        log = self.lg.LogSettings()
        log.log_output.outdir = folder
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        self.lg.StartTestWithLogSettings(self.sut.handle, self.qsl, test, log)
        keep = logs.KEPT if accuracy else (logs.SUMMARY, logs.DETAIL)
        for file in sorted(os.listdir(folder)):
            path = os.path.join(folder, file)
            if file in keep:
                self.files.append(os.path.relpath(path, self.out))
            else:
                os.unlink(path)
        with open(os.path.join(folder, logs.DETAIL)) as handle:
            return logs.read_detail(handle.read())

    def relative(self, name: str) -> str:
        return os.path.relpath(os.path.join(self.root, name), self.out)


def run_scenario(
    settings: Settings,
    model: Model,
    dataset: Dataset,
    pp: Preprocessing,
    dev: Device,
    workers: int,
    out: str,
    step: Callable[..., None],
) -> Dict[str, Any]:
    """The scenario of ``settings`` over ``model`` and ``dataset`` (samples preprocessed with ``pp`` by
    ``workers`` threads), LoadGen's logs under ``out``/mlperf; the result's ``mlperf`` section.
    ``step(name, **fields)`` says which run is under way."""
    lg = require()
    batch_size, n = model.batch_size, len(dataset.samples)
    samples = min(n, PERFORMANCE_SAMPLES)
    example = torch.zeros((batch_size, 3, pp.crop, pp.crop), dtype=model.dtype, device=dev.device)
    if model.channels_last:
        example = example.contiguous(memory_format=torch.channels_last)
    step(STEP_TIME_MODEL)
    speed = time_model(model.fn, example, dev)
    del example
    library = SampleLibrary(dataset, pp, dev.device, model.dtype, model.channels_last, workers, batch_size)
    wait_s = SERVER_BATCH_WAIT_MS / 1000 if settings.scenario == "server" else 0.0
    sut: Sut
    if settings.scenario in STREAM_SCENARIOS:
        sut = InlineSut(lg, model.fn, library, batch_size, dev.device)
    else:
        sut = BatchingSut(lg, model.fn, library, batch_size, wait_s, dev.device)
    qsl = lg.ConstructQSL(n, samples, library.load, library.unload)
    root = os.path.join(out, "mlperf")
    test = Runner.test_settings(lg, settings, root, speed, batch_size, samples)
    runner = Runner(lg, sut, qsl, test, root, out)
    try:

        def performance(name: str, qps: float) -> Dict[str, Any]:
            step(name, target_qps=round(qps, 3) if settings.scenario == "server" else None)
            return logs.run_section(runner.run(name, False, qps), runner.relative(name))

        points: Optional[List[search.Point]] = None
        if settings.scenario == "server":
            made = itertools.count(1)
            points = search.find_peak(
                lambda qps: _point(qps, performance(STEP_SEARCH + str(next(made)), qps), settings),
                settings.server_target_qps or round(speed.samples_per_s, 3),
                SEARCH_RUNS,
                SEARCH_TOLERANCE,
            )
            top = search.best(points) or min(points, key=lambda point: point.qps)
            result, qps = top.run, top.qps
        else:
            qps = speed.samples_per_s
            result = performance(STEP_PERFORMANCE, qps)
        step(STEP_ACCURACY)
        entries = runner.run("accuracy", True, qps)
        accuracy = _accuracy(os.path.join(runner.root, "accuracy", logs.ACCURACY), dataset, entries)
        accuracy["log_dir"] = runner.relative("accuracy")
    finally:
        lg.DestroyQSL(qsl)
        sut.close()
    return _section(settings, result, points, accuracy, batch_size, wait_s, samples, runner.files)


def _point(qps: float, run: Dict[str, Any], settings: Settings) -> search.Point:
    """A search run as a point: good when VALID, or, in a short run, when only its length fell short of
    LoadGen's checks (the latency bound was met)."""
    good = run["validity"] == "VALID" or (not settings.compliant and run["latency_bound_met"] is True)
    return search.Point(qps, good, run)


def _accuracy(path: str, dataset: Dataset, entries: Dict[str, Any]) -> Dict[str, Any]:
    with open(path) as handle:
        hits, scored = logs.score_accuracy(handle.read(), [sample.label for sample in dataset.samples])
    return {
        "samples": scored,
        "top1_count": hits,
        "top1_pct": round(100.0 * hits / scored, 4) if scored else 0.0,
        "reason": logs.why_invalid(entries) if entries.get("errors") else None,
    }


def _section(
    settings: Settings,
    performance: Dict[str, Any],
    points: Optional[List[search.Point]],
    accuracy: Dict[str, Any],
    batch_size: int,
    wait_s: float,
    samples: int,
    files: List[str],
) -> Dict[str, Any]:
    server = settings.scenario == "server"
    found = search.best(points) if points else None
    return {
        "scenario": settings.scenario,
        "loadgen_version": _version(),
        "rules": "mlperf.conf (%s)" % RULES_MODEL,
        "compliant": settings.compliance() is None,
        "compliance": settings.compliance() or "compliant: mlperf.conf's minimums",
        "min_duration_s": settings.duration_s,
        "server_latency_ms": settings.server_latency_ms if server else None,
        # the highest good run's target as LoadGen logged it (effective_target_qps), as its search entry says
        "server_qps": (found.run.get("target_qps") or found.qps) if found is not None else None,
        "batch_size": batch_size,
        "batch_wait_ms": wait_s * 1000,
        "performance_samples": samples,
        "performance": performance,
        "search": [point.run for point in points] if points is not None else None,
        "accuracy": accuracy,
        "log_files": files,
    }


def _version() -> str:
    """The installed LoadGen package's version, or "unknown"."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"
