"""The control install: pip's real resolver (from this machine's configured wheel index, offline) says what
``pip install .[host]`` would install; torch and the CUDA wheels must not be among it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: what the control side must never pull: torch, its CUDA wheels, the runner's other frameworks
RUNNER_ONLY = ("torch", "torchvision", "triton", "onnxruntime", "onnx")


@pytest.mark.slow
def test_host_extra_pulls_no_torch(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), f"{REPO}[host]"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"rn50bench", "paramiko", "pydantic", "pyyaml", "rich", "jinja2"} <= names
    pulled = sorted(n for n in names if n in RUNNER_ONLY or n.startswith("nvidia-"))
    assert pulled == [], f".[host] would install {pulled}"
