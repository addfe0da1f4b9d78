"""Shared pytest set-up. Fixture modules live in tests/fixtures/, one concern each."""

import os
from pathlib import Path

import pytest

#: the folder of a real ImageNet val sample (README, Tests); .ci/run sets it and checks that it is there
REAL_DATA_VARIABLE = "RN50BENCH_REAL_DATA"
REAL_DATA_FILES = (
    "imagenet_val_sample/ILSVRC2012_img_val",
    "imagenet_labels/val.txt",
    "imagenet_labels/synset_words.txt",
)

pytest_plugins = [
    "tests.fixtures.docker_env",
    "tests.fixtures.photos",
    "tests.fixtures.sshd",
    "tests.fixtures.slurm",
    "tests.fixtures.airgap",
    "tests.fixtures.slurm_multinode",
    "tests.fixtures.hostile",
    "tests.fixtures.registry",
    "tests.fixtures.weights",
    "tests.fixtures.signals",
    "tests.fixtures.stored_runs",
]


@pytest.fixture(scope="session")
def real_data() -> Path:
    """$RN50BENCH_REAL_DATA: real ImageNet val JPEGs and their labels; skipped, with why, without them."""
    value = os.environ.get(REAL_DATA_VARIABLE)
    if not value:
        pytest.skip("%s not set: no folder of real ImageNet val images (README, Tests)" % REAL_DATA_VARIABLE)
    path = Path(value)
    missing = [name for name in REAL_DATA_FILES if not (path / name).exists()]
    if missing:
        pytest.skip("%s=%s has no %s" % (REAL_DATA_VARIABLE, path, " or ".join(missing)))
    return path
