"""Figures over runs (metrics.md "Spread"): Student t's quantiles, the interval of the mean, what two
intervals say (beyond noise, within noise, cannot tell) and how many runs would tell; and compare's verdict
on entries with and without intervals."""

import math
import statistics

import pytest

from orchestrator.metrics import interval as noise
from orchestrator.metrics.table import BY_KEY
from orchestrator.report import compare as cmp


def _t_coverage(q: float, df: int, steps: int = 20000) -> float:
    """P(|T| <= q) for Student's t with ``df`` degrees of freedom, by Simpson's rule over its density: an
    independent check of the table."""
    norm = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))

    def density(x: float) -> float:
        return norm * (1 + x * x / df) ** (-(df + 1) / 2)

    h = 2 * q / steps
    total = density(-q) + density(q)
    total += sum((4 if i % 2 else 2) * density(-q + i * h) for i in range(1, steps))
    return total * h / 3


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 30, 31, 45, 100])
def test_the_t_quantile_covers_95_percent(df):
    assert _t_coverage(noise.t_975(df), df) == pytest.approx(0.95, abs=2e-4)


def test_the_interval_of_three_runs_is_the_students_t_one():
    found = noise.over_runs([10.0, 12.0, 14.0])
    assert found is not None
    half = 4.3027 * 2.0 / math.sqrt(3)  # t(0.975, 2) x sample std / sqrt(K)
    assert (found.k, found.mean) == (3, 12.0)
    assert (found.low, found.high) == (pytest.approx(12 - half), pytest.approx(12 + half))
    assert found.cv == pytest.approx(statistics.stdev([10, 12, 14]) / 12)
    assert found.compact() == "±41%% (K = 3)".replace("%%", "%")


def test_one_run_gives_no_interval_never_a_width_of_zero():
    found = noise.over_runs([7.5])
    assert found is not None and (found.low, found.high, found.cv) == (None, None, None)
    assert found.compact() == "(K = 1: no interval)"
    assert noise.over_runs([]) is None


def _interval(*values: float) -> noise.Interval:
    found = noise.over_runs(values)
    assert found is not None
    return found


@pytest.mark.parametrize(
    "a, b, higher, said",
    [
        ((100, 101, 102), (90, 91, 92), True, noise.BETTER),
        ((100, 101, 102), (90, 91, 92), False, noise.WORSE),  # a time: lower is better
        ((100, 110, 90), (101, 99, 100), True, noise.WITHIN_NOISE),
        ((100, 110, 90), (100,), True, noise.CANNOT_TELL),
    ],
)
def test_two_intervals_differ_beyond_noise_only_when_they_do_not_overlap(a, b, higher, said):
    assert noise.verdict(_interval(*a), _interval(*b), higher) == said


def test_the_runs_that_would_tell_grow_as_the_difference_shrinks():
    assert noise.runs_to_tell(10.0, 1.0) == 3  # 2 x 4.30 x 1 / sqrt(3) = 4.97 < 10; K = 2 gives 18
    assert noise.runs_to_tell(2.0, 1.0) == 7  # K = 6: 2 x 2.571 / sqrt(6) = 2.10; K = 7: 1.85
    assert noise.runs_to_tell(0.1, 1.0) is None  # more than 30 runs
    assert noise.runs_to_tell(0.0, 1.0) is None


def _entry(tool: str, origin: str = "", **figures: tuple) -> cmp.Entry:
    intervals = {key: _interval(*values) for key, values in figures.items()}
    return cmp.Entry(
        "local d0 " + tool,
        ("resnet50", tool, "fp32", "4"),
        {key: i.mean for key, i in intervals.items()},
        {},
        intervals,
        origin,
    )


def test_compare_says_which_toolkit_is_faster_beyond_noise_in_the_figures_own_sense():
    fast = _entry("onnxruntime", p_infer_core=(50.0, 51.0, 49.0), e2e_time_s=(10.0, 10.2, 9.8))
    slow = _entry("pytorch", p_infer_core=(20.0, 21.0, 19.0), e2e_time_s=(12.0, 12.1, 11.9))
    comparison = cmp.compare(cmp.Side("A", [fast]), cmp.Side("B", [slow]), False, ["case", "precision", "bs"])
    rows = {row["figure"]: row for row in cmp.rows(comparison)}
    assert rows["p_infer_core (img/s)"]["verdict"] == "A better (beyond noise)"
    assert rows["e2e_time_s (s)"]["verdict"] == "A better (beyond noise)"  # shorter
    assert rows["p_infer_core (img/s)"]["tool"] == "onnxruntime vs pytorch"
    assert rows["p_infer_core (img/s)"]["a"] == "50.0 ±5% (K = 3)"  # 4.30 x 1 / sqrt(3) / 50


def test_identical_figures_are_within_noise_and_an_entry_pairs_with_itself_only_for_want_of_another():
    one = _entry("pytorch", "r1/s", p_infer_core=(20.0, 22.0, 19.0))
    again = _entry("pytorch", "r2/s", p_infer_core=(20.0, 22.0, 19.0))  # the same figures, another run
    comparison = cmp.compare(cmp.Side("A", [one]), cmp.Side("B", [again]), False)
    verdicts = {row["figure"]: row["verdict"] for row in cmp.rows(comparison)}
    assert verdicts.pop("p_infer_core (img/s)") == "within noise"
    assert set(verdicts.values()) == {""}  # figures neither side has
    other = _entry("onnxruntime", "r1/o", p_infer_core=(40.0, 41.0, 39.0))
    both = cmp.Side("A", [one, other])
    itself = cmp.compare(both, both, False)  # the default key: each series with itself
    assert [(a.origin, b.origin) for a, b in itself.pairs] == [("r1/s", "r1/s"), ("r1/o", "r1/o")]
    toolkits = cmp.compare(both, both, False, ["case", "precision", "bs"])  # another series first
    assert [(a.origin, b.origin) for a, b in toolkits.pairs] == [("r1/s", "r1/o"), ("r1/o", "r1/s")]


def test_single_runs_cannot_tell_and_say_how_many_runs_would():
    metric = BY_KEY["p_infer_core"]
    a = _entry("pytorch", p_infer_core=(20.0, 21.0, 19.0))
    b = _entry("pytorch", p_infer_core=(22.0,))
    said = cmp.verdict(metric, a, b)
    assert said.startswith("cannot tell: B is one run; about ") and "runs on both sides" in said
    neither = cmp.verdict(metric, _entry("pytorch", p_infer_core=(20.0,)), b)
    assert neither == (
        "cannot tell: A and B are each one run; runs: 3 or more on both sides would give intervals"
    )


def test_pair_by_names_only_the_key_fields():
    side = cmp.Side("A", [_entry("pytorch", p_infer_core=(1.0,))])
    fields = "case,toolkit,precision,bs,scenario"
    with pytest.raises(cmp.ReportError, match="--pair-by: device: give some of " + fields):
        cmp.compare(side, side, False, ["case", "device"])
