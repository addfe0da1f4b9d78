"""LoadGen's logs read back: the detail log (``mlperf_log_detail.txt``, one ``:::MLLOG {json}`` line per
entry) as one run's figures and its validity in plain words, and the accuracy log
(``mlperf_log_accuracy.json``) scored against the labels.

Standard library only. The summary (``mlperf_log_summary.txt``) says the same for people: kept, not read.
"""

import json
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

SUMMARY = "mlperf_log_summary.txt"
DETAIL = "mlperf_log_detail.txt"
ACCURACY = "mlperf_log_accuracy.json"
TRACE = "mlperf_log_trace.json"
#: what the runner keeps of a run's logs
KEPT = (SUMMARY, DETAIL, ACCURACY)
PREFIX = ":::MLLOG "
#: a response's data: the top-1 class, an int32 in the machine's order (little-endian on every target)
RESPONSE = struct.Struct("<i")

#: LoadGen's checks of a performance run -> what failing it means, in plain words
CHECKS = (
    ("result_perf_constraints_met", "the latency bound was not met"),
    ("result_min_duration_met", "the run was shorter than its minimum duration"),
    ("result_min_queries_met", "fewer queries than the minimum were run"),
    (
        "early_stopping_met",
        "too few queries to bound the latency percentile with confidence (early stopping)",
    ),
)
#: the percentiles a run's section gives (LoadGen's key -> the section's)
PERCENTILES = (("50.00", "p50"), ("90.00", "p90"), ("99.00", "p99"))


def read_detail(text: str) -> Dict[str, Any]:
    """The entries of a detail log, key -> value (a key logged twice: its last value); errors and warnings
    gathered under ``"errors"`` and ``"warnings"``."""
    entries: Dict[str, Any] = {"errors": [], "warnings": []}
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        try:
            entry = json.loads(line[len(PREFIX) :])
            key, metadata = entry["key"], entry.get("metadata") or {}
        except (ValueError, KeyError, TypeError):
            continue
        if metadata.get("is_error"):
            entries["errors"].append(str(entry.get("value")))
        elif metadata.get("is_warning"):
            entries["warnings"].append(str(entry.get("value")))
        entries[key] = entry.get("value")
    return entries


def why_invalid(entries: Dict[str, Any]) -> Optional[str]:
    """Why LoadGen found the run INVALID, in plain words (its checks that failed, its recommendation and its
    errors); None for a VALID run."""
    if entries.get("result_validity") == "VALID":
        return None
    reasons = [words for key, words in CHECKS if entries.get(key) is False]
    advice = str(entries.get("result_invalid_reason") or "").strip()
    if advice:
        reasons.append("LoadGen advises: " + advice)
    reasons += ["LoadGen error: " + error for error in entries["errors"]]
    return "; ".join(reasons) or "LoadGen gave no reason"


def _ms(value: Any) -> Optional[float]:
    return None if value is None else round(float(value) / 1e6, 6)


def _samples_per_s(entries: Dict[str, Any]) -> Optional[float]:
    """Completed samples per second, as the scenario's summary gives it (MultiStream: samples a query over
    the mean query latency, its queries being issued one after the other)."""
    for key in (
        "result_samples_per_second",
        "result_completed_samples_per_sec",
        "result_qps_with_loadgen_overhead",
    ):
        if entries.get(key):
            return round(float(entries[key]), 3)
    mean_ns, per_query = entries.get("result_mean_latency_ns"), entries.get("effective_samples_per_query")
    return round(per_query * 1e9 / mean_ns, 3) if mean_ns and per_query else None


def run_section(entries: Dict[str, Any], log_dir: str) -> Dict[str, Any]:
    """The result's section of one performance run (``mlperf.performance``, an item of ``mlperf.search``)."""
    latency = {name: _ms(entries.get("result_%s_percentile_latency_ns" % pct)) for pct, name in PERCENTILES}
    latency.update(
        mean=_ms(entries.get("result_mean_latency_ns")),
        min=_ms(entries.get("result_min_latency_ns")),
        max=_ms(entries.get("result_max_latency_ns")),
    )
    return {
        "log_dir": log_dir,
        "validity": "VALID" if entries.get("result_validity") == "VALID" else "INVALID",
        "reason": why_invalid(entries),
        "latency_bound_met": entries.get("result_perf_constraints_met"),
        "target_qps": entries.get("effective_target_qps")
        if entries.get("effective_scenario") == "Server"
        else None,
        "samples_per_s": _samples_per_s(entries),
        "queries": int(entries.get("result_query_count") or 0),
        "samples_per_query": int(entries.get("effective_samples_per_query") or 1),
        "latency_ms": latency if None not in latency.values() else None,
    }


def score_accuracy(text: str, labels: Sequence[int]) -> Tuple[int, int]:
    """(top-1 hits, samples scored) of an accuracy log: each sample's response read as its top-1 class and
    compared with ``labels[qsl_idx]``; a sample logged twice counts once. ValueError for a log that is not
    LoadGen's accuracy log."""
    logged: List[Any] = json.loads(text)
    if not isinstance(logged, list):
        raise ValueError("%s: not a list of responses" % ACCURACY)
    classes: Dict[int, int] = {}
    for item in logged:
        index, data = int(item["qsl_idx"]), bytes.fromhex(item["data"])
        if not 0 <= index < len(labels) or len(data) != RESPONSE.size:
            raise ValueError("%s: response %r is not one of this set's samples' classes" % (ACCURACY, item))
        classes[index] = RESPONSE.unpack(data)[0]
    return sum(1 for index, top1 in classes.items() if labels[index] == top1), len(classes)
