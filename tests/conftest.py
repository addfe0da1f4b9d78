"""Shared pytest set-up. Fixture modules live in tests/fixtures/, one concern each."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RN50BENCH_SHARED", REPO.parent / "shared"))

pytest_plugins = [
    "tests.fixtures.docker_env",
    "tests.fixtures.sshd",
    "tests.fixtures.slurm",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: the 630 real ImageNet val images and the official labels."""
    path = SHARED / "data"
    if not (path / "imagenet_labels" / "val.txt").is_file():
        pytest.fail("shared data not found at %s (set RN50BENCH_SHARED)" % path)
    return path
