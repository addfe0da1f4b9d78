"""The runner's command line: every flag explained, bad input refused in one line with nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

from runner_in_container import cli, contract
from runner_in_container.cases import discover
from runner_in_container.data.generate import generate

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def imageset(tmp_path_factory) -> str:
    return generate(str(tmp_path_factory.mktemp("cli") / "set"), 3, layout="imagefolder", size=(64, 48))


def test_help_explains_every_flag_with_default_or_required():
    parser = cli.build_parser()
    text = parser.format_help()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, action.dest
        assert "default" in action.help or "required" in action.help, action.dest
        assert action.option_strings[0] in text
    for unit in ("FLOP/s", "IMAGES", "BATCHES", "THREADS"):
        assert unit in text
    assert "efficientnet_lite0" in text and "resnet50" in text


def test_the_case_modules_are_the_contracts():
    assert tuple(sorted(discover())) == contract.CASES


def _bad(imageset, tmp_path, capsys, *changes):
    out = tmp_path / "out"
    args = {
        "--case": "resnet50",
        "--data": imageset,
        "--weights": "random",
        "--device": "cpu",
        "--batch-size": "2",  # at most the 3 images
        "--out": str(out),
    }
    extra = []
    for flag, value in zip(changes[::2], changes[1::2]):
        if value is None:
            args.pop(flag)
        elif flag in args:
            args[flag] = value
        else:
            extra += [flag, value]
    argv = [x for pair in args.items() for x in pair] + extra
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert not out.exists()
    return err


@pytest.mark.parametrize(
    "changes, expected",
    [
        (("--data", "/nonexistent/val"), "error: --data: /nonexistent/val: no such file or directory"),
        (("--toolkit", "nosuchkit"), "error: --toolkit: invalid choice: 'nosuchkit'"),
        (("--precision", "fp8"), "error: --precision: invalid choice: 'fp8'"),
        (("--precision", "int8"), "error: --precision: toolkit pytorch does not run int8"),
        (
            ("--toolkit", "onnxruntime", "--precision", "fp16"),
            "error: --precision: onnxruntime runs fp16 only on CUDA",
        ),
        (("--batch-size", "0"), "error: --batch-size: must be in 1..65536, got 0"),
        (("--batch-size", "4"), "error: --batch-size: 4 is larger than the 3 images of --data; use at most"),
        (("--repeat", "two"), "error: --repeat: not an integer: 'two'"),
        (("--device", "tpu"), "error: --device: expected cpu, cuda or cuda:N"),
        (("--labels", "/nonexistent/val.txt"), "error: --labels: /nonexistent/val.txt: no such file"),
        (("--data-md5", "abc"), "error: --data-md5: must be 32 hex digits"),
        (("--peak-flops", "1e15"), "error: --peak-source: required with --peak-flops"),
        (("--peak-flops", "-1", "--peak-source", "x"), "error: --peak-flops: must be a positive number"),
        (("--weights", "/nonexistent/resnet50-0676ba61.pth"), "error: --weights: /nonexistent/resnet50-0676"),
        (("--weights", "package"), "error: --weights: package: case resnet50 ships no package weights"),
        (("--weights", None), "error: --weights: required"),
        (("--toolkit-option", "novalue"), "error: --toolkit-option: expected KEY=VALUE"),
        (("--layout", "flat"), "error: --labels: required with the flat and tar layouts"),
        (("--data-md5", "0" * 32), "error: --data: "),  # a folder (auto): the data says it is no tar
        (
            ("--data-md5", "0" * 32, "--layout", "imagefolder"),
            "error: --data-md5: applies to the tar layout only",
        ),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(imageset, tmp_path, capsys, changes, expected):
    assert _bad(imageset, tmp_path, capsys, *changes).startswith(expected)


def test_bad_input_through_python_dash_m(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner_in_container",
            "--case",
            "resnet50",
            "--data",
            str(tmp_path / "missing"),
            "--weights",
            "random",
            "--out",
            str(out),
        ],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: --data: %s: no such file or directory\n" % (tmp_path / "missing")
    assert proc.stdout == "" and not out.exists()


def test_int8_val_precision_follows_the_device():
    import torch

    assert cli.val_precision("int8", torch.device("cpu")) == "fp32"
    assert cli.val_precision("int8", torch.device("cuda", 0)) == "fp16"
    assert cli.val_precision("bf16", torch.device("cpu")) == "bf16"
