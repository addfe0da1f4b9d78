"""Toolkit knobs typed in the contract, and the rules that join options and knobs checked by one function
(contract.check_run) in both places that must agree: ``plan`` refuses a cluster file whose jobs the runner
would refuse, in one line naming the file, the line and the field; the runner refuses the same at its start
(exit 2, one line, nothing written)."""

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from runner_in_container import contract
from runner_in_container.data.generate import generate

REPO = Path(__file__).resolve().parent.parent

CLUSTER = """\
store: s.sqlite
hosts:
  - name: gpu
    address: 198.18.0.2
    vendor: nvidia
    runtime: bare
    data: {path: /data/val}
    weights: random
    decode_processes: %(processes)s
cases:
  - toolkit: pytorch
    precision: fp16
    batch_size: 256
  - toolkit: [cudnn_fused]
    precision: fp16
    batch_size: 256
    decoder: %(decoder)s
    toolkit_options:
      hold_until: go
      cudnn_fused_branches: "%(branches)s"
"""


def cluster(tmp_path: Path, processes: int = 2, decoder: str = "auto", branches: str = "2") -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER % {"processes": processes, "decoder": decoder, "branches": branches})
    return path


def plan(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "plan", "--cluster", str(path)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_cluster_file_whose_jobs_the_runner_takes_plans(tmp_path):
    proc = plan(cluster(tmp_path))
    assert proc.returncode == 0, proc.stderr


def test_plan_refuses_decoding_processes_with_the_pil_decoder(tmp_path):
    path = cluster(tmp_path, decoder="pil")
    proc = plan(path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "error: %s:9: hosts[0].decode_processes: applies to nvjpeg; the pil decoder decodes in the workers' "
        "threads; with cases[1].decoder: pil\n" % path
    )


def test_plan_refuses_a_knob_value_its_toolkit_would_refuse(tmp_path):
    path = cluster(tmp_path, branches="banana")
    proc = plan(path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "error: %s:20: cases[1].toolkit_options.cudnn_fused_branches: not an integer: 'banana'\n" % path
    )


def test_plan_refuses_knobs_that_do_not_hold_together(tmp_path):
    path = cluster(tmp_path, branches="4")
    path.write_text(path.read_text().replace("      hold_until: go\n", '      cudnn_fused_graph: "0"\n'))
    proc = plan(path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: %s:20: cases[1].toolkit_options.cudnn_fused_branches: more than 1 needs cudnn_fused_graph=1 "
        "(the branches run in the graph); with cases[1].toolkit_options.cudnn_fused_graph: 0\n" % path
    )


def test_plan_refuses_a_flat_layout_without_labels_at_the_data_it_names(tmp_path):
    path = cluster(tmp_path)
    flat = "data: {path: /data/val, layout: flat}"
    path.write_text(path.read_text().replace("data: {path: /data/val}", flat))
    proc = plan(path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: %s:7: hosts[0].data.labels: required with the flat and tar layouts (val.txt or "
        "LOC_val_solution.csv); with hosts[0].data.layout: flat\n" % path
    )


@pytest.fixture(scope="module")
def imageset(tmp_path_factory) -> str:
    return generate(str(tmp_path_factory.mktemp("knobs") / "set"), 2, layout="imagefolder", size=(64, 48))


def start(imageset: str, out: Path, extra: List[str]) -> subprocess.CompletedProcess:
    argv = ["--case", "resnet50", "--data", imageset, "--weights", "random", "--device", "cpu"]
    return subprocess.run(
        [sys.executable, "-m", "runner_in_container", *argv, "--out", str(out), *extra],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "extra, line",
    [
        (
            ["--decoder", "pil", "--decode-processes", "2"],
            "error: --decode-processes: applies to nvjpeg; the pil decoder decodes in the workers' threads\n",
        ),
        (
            ["--toolkit-option", "cudnn_fused_branches=banana"],
            "error: --toolkit-option: cudnn_fused_branches: not an integer: 'banana'\n",
        ),
        (
            ["--toolkit-option", "cudnn_fused_graph=0", "--toolkit-option", "cudnn_fused_branches=2"],
            "error: --toolkit-option: cudnn_fused_branches: more than 1 needs cudnn_fused_graph=1 (the "
            "branches run in the graph)\n",
        ),
        (
            ["--toolkit-option", "inductor_mdoe=default"],
            "error: --toolkit-option: inductor_mdoe: no toolkit reads it (knobs: cudnn_fused_benchmark, "
            "cudnn_fused_branches, ",
        ),
        (["--peak-flops", "1e15"], "error: --peak-source: required with --peak-flops"),
    ],
)
def test_the_runner_refuses_the_same_at_its_start(imageset, tmp_path, extra, line):
    out = tmp_path / "out"
    proc = start(imageset, out, extra)
    assert proc.returncode == 2 and proc.stdout == "" and not out.exists()
    assert proc.stderr.startswith(line) and proc.stderr.count("\n") == 1, proc.stderr


def test_every_knob_is_declared_with_help_a_parser_and_a_toolkit_that_reads_it():
    for knob in contract.KNOBS:
        assert knob.help and (knob.toolkit is None or knob.toolkit in contract.TOOLKITS), knob.name
        if knob.default is not None:
            knob.check(knob.default)  # a declared default is a value the knob takes
    assert contract.knobs("pytorch") == (contract.HOLD_KNOB,)
    assert contract.TOOLKIT_KNOBS["cudnn_fused"] == (
        "cudnn_fused_benchmark", "cudnn_fused_branches", "cudnn_fused_graph"
    )


def test_check_run_parses_each_knob_and_names_the_one_at_fault():
    contract.check_run({"decoder": "nvjpeg", "decode_processes": 4}, {"inductor_freezing": "0"})
    contract.check_run({"decoder": "pil", "decode_processes": 1}, {"zxrt_card": "3"})
    with pytest.raises(contract.Conflict) as caught:
        contract.check_run({}, {"inductor_mode": "fastest"})
    assert (caught.value.name, caught.value.others) == ("inductor_mode", ())
    assert caught.value.what.startswith("'fastest' is not one of default, reduce-overhead")
    with pytest.raises(contract.Conflict) as caught:
        contract.check_run({"peak_source": "a table"}, {})
    assert str(caught.value) == "peak_flops: required with --peak-source"
