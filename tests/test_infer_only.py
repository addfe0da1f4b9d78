"""Issue 32, item 3: ``stages: [infer]`` (runner ``--stages infer``): no val stage; the val figures and the
agreement are absent (null, shown as not run), never zero. A real runner on the CPU, and its result through
collect and the derived figures."""

import pytest

import vendors
from orchestrator.job import collect
from orchestrator.metrics.table import BY_KEY
from runner_in_container.data.generate import generate
from tests.test_runner_e2e import check_stage, common, read_result, run_runner
from tests.test_runner_schema import check_result


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    return generate(str(tmp_path_factory.mktemp("images") / "set"), 5, layout="imagefolder", size=(96, 80))


@pytest.mark.slow
def test_an_infer_only_run_has_no_val_figures_and_says_so(images, tmp_path):
    out = tmp_path / "out"
    rc, events, stderr = run_runner(
        common(images, out, "efficientnet_lite0", "random") + ["--stages", "infer"]
    )
    assert rc == 0, stderr
    doc = read_result(out)
    assert check_result(doc) == []
    assert doc["config"]["stages"] == "infer"
    assert doc["stages"]["val"] is None and doc["memory"]["stages"]["val"] is None
    assert doc["agreement_top1"] is None
    check_stage(doc["stages"]["infer"], "pytorch", 5, 2, 2)
    assert not any(e.get("stage") == "val" for e in events)
    result = collect.read(doc)
    assert result.figures is not None and result.figures.val is None
    derived = collect.derive(result, vendors.get("cpu"), None)
    for key in ("p_val_whole", "p_val_core", "acc_val_top1"):
        assert derived.figure(key) is None and BY_KEY[key].show(None) == "not run"
    assert derived.figure("p_infer_core") > 0


def test_a_job_without_val_compares_with_one_that_ran_it():
    """The val precision is a condition where both sides ran val; 'not run' is no difference, unknown is."""
    from orchestrator.metrics.table import NOT_RUN
    from orchestrator.report import compare as cmp

    def side(name, val):
        conditions = {name: "x" for name in cmp.CONDITIONS}
        conditions["precision.val"] = val
        return cmp.Side(name, [cmp.Entry("h", ("resnet50", "pytorch", "fp16", "256"), {}, conditions)])

    assert cmp.compare(side("a", "fp16"), side("b", NOT_RUN), force=False).differences == []
    forced = cmp.compare(side("a", "fp16"), side("b", None), force=True)
    assert forced.differences == ["precision.val (fp16 vs unknown)"]
