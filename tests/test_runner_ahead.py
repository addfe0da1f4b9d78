"""Decoding processes spawned before the runner imports torch (runner_in_container/ahead.py): which command
lines settle them, the set-up taking them or stopping them, and a command line that turns out bad."""

import subprocess
import sys

import pytest
import torch

from runner_in_container import ahead, cli
from runner_in_container.data.generate import generate
from tests.fixtures.stored_runs import REPO


@pytest.fixture
def sixteen_cpus(monkeypatch, tmp_path):
    """16 usable CPUs and no MPS daemon: 4 decoding processes by default."""
    monkeypatch.setattr(ahead, "usable_cpus", lambda: 16)
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path / "no-mps"))


@pytest.mark.parametrize(
    "argv, settled",
    [
        (["--device", "cuda"], ("cuda:0", 4)),
        (["--case", "resnet50", "--device=cuda:1", "--decoder", "nvjpeg"], ("cuda:1", 4)),
        (["--device", "cuda", "--decode-processes", "6"], ("cuda:0", 6)),
        (["--device", "cuda", "--decode-processes", "1"], None),  # decoding in the runner's own process
        (["--device", "cuda", "--decoder", "pil"], None),
        (["--device", "cpu"], None),
        ([], None),  # cuda only if available: the runner's set-up finds out
        (["--dev", "cuda"], None),  # an abbreviation: the runner's parser reads it, not this one
        (["--device", "cuda", "--decode-processes", "many"], None),  # the runner's parser says why
        (["--device", "cuda", "--decode-processes", "-2"], None),
        (["--device"], None),
        (["--device", "cuda", "--help"], None),
    ],
)
def test_only_a_command_line_that_settles_them_spawns_decoding_processes_ahead(sixteen_cpus, argv, settled):
    assert ahead.wanted(argv) == settled


class _Ahead:
    """Processes spawned ahead, as cli.py sees them."""

    def __init__(self, device: str, processes: int) -> None:
        self.device, self.processes = device, processes
        self.calls: list = []

    def use_device(self) -> None:
        self.calls.append("use_device")

    def close(self) -> None:
        self.calls.append("close")


def test_the_set_up_takes_processes_spawned_ahead_that_match_and_lets_them_use_the_device():
    spawned = _Ahead("cuda:0", 3)
    assert cli._spawn_decoders("auto", torch.device("cuda", 0), 3, spawned) is spawned
    assert spawned.calls == ["use_device"]  # after the memory baseline: their contexts are the job's


@pytest.mark.parametrize(
    "requested, device", [("pil", torch.device("cuda", 0)), ("auto", torch.device("cpu"))]
)
def test_the_set_up_stops_processes_spawned_ahead_that_it_does_not_need(requested, device):
    spawned = _Ahead("cuda:0", 3)
    assert cli._spawn_decoders(requested, device, 3, spawned) is None
    assert spawned.calls == ["close"]


def test_a_bad_command_line_ends_the_runner_and_its_processes_spawned_ahead(tmp_path):
    """Spawned ahead for cuda, the runner then finds no CUDA: one line, exit 2, nothing from the processes."""
    data = generate(str(tmp_path / "set"), 2, layout="imagefolder", size=(64, 48))
    out = tmp_path / "out"
    argv = ["--case", "resnet50", "--data", data, "--weights", "random", "--out", str(out)]
    argv += ["--device", "cuda", "--decode-processes", "2"]
    assert ahead.wanted(argv) == ("cuda:0", 2)
    done = subprocess.run(
        [sys.executable, "-m", "runner_in_container"] + argv, cwd=str(REPO), capture_output=True, text=True
    )
    assert done.returncode == 2 and not out.exists()
    assert done.stderr == "error: --device: cuda requested but CUDA is not available here\n"
