"""Issue 32, item 3: a vendor's own artefacts. ``--onnx-path`` (a vendor's ONNX graph) is run by the infer
toolkit instead of one exported in the run, ``--engine-path`` (a vendor's engine) is loaded instead of one
exported and built; the sha256 of each is in the result. A real runner on the CPU with onnxruntime and a
graph exported beforehand under a vendor's name; the engine choice through a real toolkit's settings."""

from pathlib import Path

import pytest
import torch

from runner_in_container import toolkits
from runner_in_container.cases import discover
from runner_in_container.data.generate import generate
from runner_in_container.hashing import sha256_file
from runner_in_container.toolkits.base import ToolkitSettings
from runner_in_container.toolkits.engine_cache import engine_file
from runner_in_container.toolkits.onnx_export import export_onnx
from tests.test_runner_e2e import check_stage, common, read_result, run_runner
from tests.test_runner_schema import check_result


@pytest.fixture(scope="module")
def imageset(tmp_path_factory) -> str:
    """7 generated images in the imagefolder layout, as test_runner_e2e's."""
    return generate(
        str(tmp_path_factory.mktemp("imageset") / "set"), 7, layout="imagefolder", size=(160, 120)
    )


@pytest.fixture(scope="module")
def vendor_onnx(tmp_path_factory) -> Path:
    """efficientnet_lite0's seeded random init exported for batch size 2 as a vendor would ship it."""
    case = discover()["efficientnet_lite0"]
    model = case.build(case.resolve_weights("random"))
    path = tmp_path_factory.mktemp("vendor") / "lite0-vendor-tuned.onnx"
    export_onnx(model, torch.zeros(2, 3, 224, 224), str(path))
    return path


@pytest.mark.slow
def test_the_infer_toolkit_runs_the_vendor_onnx_and_the_result_records_its_sha256(
    imageset, tmp_path, vendor_onnx
):
    out = tmp_path / "out"
    args = common(imageset, out, "efficientnet_lite0", "random")
    rc, _, stderr = run_runner(args + ["--toolkit", "onnxruntime", "--onnx-path", str(vendor_onnx)])
    assert rc == 0, stderr
    doc = read_result(out)
    assert check_result(doc) == []
    digest = sha256_file(str(vendor_onnx))
    assert doc["artefacts"] == {"onnx": {"path": str(vendor_onnx), "sha256": digest}, "engine": None}
    infer = doc["stages"]["infer"]
    check_stage(infer, "onnxruntime", 7, 2, 2)
    assert (
        "onnx: %s sha256 %s, given (the vendor's own, not exported)" % (vendor_onnx, digest)
        in (infer["toolkit_notes"])
    )
    assert doc["agreement_top1"] == 1.0  # the same model as the val stage's, seeded alike
    assert doc["config"]["onnx_path"] == str(vendor_onnx)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--onnx-path", "{onnx}"], "error: --onnx-path: applies to the toolkits that run an ONNX graph: "
         "ixrt, onnxruntime, tensorrt, xtcl, zxrt"),
        (["--toolkit", "onnxruntime", "--engine-path", "{onnx}"], "error: --engine-path: applies to the "
         "toolkits that build an engine: ixrt, tensorrt, zxrt"),
        (["--toolkit", "onnxruntime", "--onnx-path", "/nonexistent/vendor.onnx"],
         "error: --onnx-path: /nonexistent/vendor.onnx: no such file or directory"),
    ],
)  # fmt: skip
def test_artefacts_a_toolkit_cannot_take_are_refused_in_one_line(
    imageset, tmp_path, vendor_onnx, extra, message
):
    out = tmp_path / "out"
    args = common(imageset, out, "efficientnet_lite0", "random") + [a.format(onnx=vendor_onnx) for a in extra]
    rc, _, stderr = run_runner(args)
    assert rc == 2 and stderr == message + "\n"
    assert not out.exists()


def test_a_given_engine_is_loaded_as_it_is_nothing_exported_or_built(tmp_path):
    given = tmp_path / "vendor.engine"
    given.write_bytes(b"a vendor's engine")
    calls = []

    def prepare():
        calls.append("prepare")
        return "k" * 64, lambda tmp: Path(tmp).write_bytes(b"built")

    def toolkit(engine_path=None):
        settings = ToolkitSettings(
            torch.device("cpu"), "fp32", 2, str(tmp_path / "work"), engine_path=engine_path
        )
        return toolkits.load("pytorch")(settings)

    vendor = toolkit(str(given))
    assert engine_file(vendor, ".engine", prepare) == str(given) and calls == []
    assert vendor.notes == ["engine %s given (the vendor's own: not exported, not built)" % given]
    own = toolkit()
    built = engine_file(own, ".engine", prepare)
    assert Path(built).read_bytes() == b"built" and calls == ["prepare"]
    assert own.notes == ["engine %s built" % built] and own.durations["compile_s"] > 0
    assert engine_file(toolkit(), ".engine", prepare) == built and calls == ["prepare"] * 2  # from the cache


def test_a_hosts_own_artefact_missing_there_fails_the_job_before_any_build(tmp_path):
    """The host's onnx_path / engine_path must exist there, as its data and weights must (check_paths)."""
    from orchestrator.host.prepare import check_paths
    from orchestrator.model.cluster import Host
    from orchestrator.outcome import Stage, StageFailure
    from orchestrator.transport.local import LocalTransport

    given = tmp_path / "vendor.onnx"
    given.write_bytes(b"a graph")
    base = {
        "name": "here",
        "address": "local",
        "vendor": "cpu",
        "data": {"path": str(tmp_path)},
        "weights": "random",
    }
    transport = LocalTransport()
    try:
        check_paths(transport, Host.model_validate(dict(base, onnx_path=str(given))), 10.0)
        missing = Host.model_validate(dict(base, engine_path=str(tmp_path / "none.engine")))
        with pytest.raises(StageFailure) as failed:
            check_paths(transport, missing, 10.0)
    finally:
        transport.close()
    assert failed.value.stage == Stage.START
    assert str(failed.value) == "engine_path %s does not exist on host here" % (tmp_path / "none.engine")
