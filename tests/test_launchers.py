"""Launchers as the job's life and the cluster file see them: a launcher module owns its sections of the
file (its models and rules, validated by config/load.py; the cluster models name no launcher), the lifecycle
keeps what a launcher returns. That job/ and the models import no launcher is a layers contract of make lint
(import-linter, pyproject.toml)."""

from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from pydantic import Field

import orchestrator.launchers
import vendors
from orchestrator.config.load import load_cluster
from orchestrator.job.launch import Built
from orchestrator.job.stages import RunContext
from orchestrator.launchers.base import Launcher
from orchestrator.launchers.ssh import DirectLauncher
from orchestrator.model.cluster import Cluster
from orchestrator.model.fields import ConfigError, Model, Problem, Problems
from orchestrator.store import Store
from orchestrator.transport.base import Transport

ROOT = Path(__file__).resolve().parent.parent


class PoolSettings(Model):
    """``pool:`` of a cluster file."""

    max_jobs: int = Field(1, ge=1, le=64)


class PoolHost(Model):
    """``hosts[].pool``."""

    queue: str = Field(pattern=r"^[a-z]+$")


class PoolLauncher(DirectLauncher):
    """A stand-in launcher with sections of its own, as a new module of orchestrator/launchers adds one."""

    name = "pool"
    settings_class = PoolSettings
    host_settings_class = PoolHost

    @classmethod
    def check(cls, cluster: Cluster) -> None:
        if PoolSettings.model_validate(cluster.section("pool") or {}).max_jobs > len(cluster.hosts):
            said = "more than the %d host entries" % len(cluster.hosts)
            raise Problems([Problem(("pool", "max_jobs"), said)])


@pytest.fixture
def with_pool(monkeypatch):
    """The installation's launchers and the stand-in ``pool``."""
    known = {**orchestrator.launchers.discover(), "pool": PoolLauncher}
    monkeypatch.setattr(orchestrator.launchers, "discover", lambda: known)


POOL = """
launcher: pool
pool: {max_jobs: 1}
hosts:
  - {name: a, address: local, vendor: cpu, runtime: bare, data: {path: /d}, weights: random,
     pool: {queue: fast}}
cases: [{}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return path


def test_a_launchers_sections_stay_in_the_file_format_and_round_trip(tmp_path, with_pool):
    cluster = load_cluster(write(tmp_path, POOL))
    assert cluster.section("pool") == {"max_jobs": 1}
    assert cluster.hosts[0].section("pool") == {"queue": "fast"}
    dumped = cluster.model_dump(mode="json")  # what the store keeps, and a resume reads back
    assert dumped["pool"] == {"max_jobs": 1} and dumped["hosts"][0]["pool"] == {"queue": "fast"}
    assert Cluster.model_validate(dumped) == cluster


@pytest.mark.parametrize(
    "edit, line",
    [
        (("max_jobs: 1", "max_jobs: 0"), "pool.max_jobs: must be at least 1 (got 0)"),
        (("queue: fast", "queue: Fast"), "hosts[0].pool.queue: must match ^[a-z]+$ (got 'Fast')"),
        (("queue: fast", "queue: fast, depth: 2"), "hosts[0].pool.depth: unknown key (known: queue)"),
        (("max_jobs: 1", "max_jobs: 2"), "pool.max_jobs: more than the 1 host entries"),
        (("launcher: pool\n", ""), "pool: set launcher: pool to use these settings"),
        (("launcher: pool\n", "launcher: slurm\n"), "pool: set launcher: pool to use these settings"),
        (("pool: {max", "pools: {max"), "pools: unknown key; did you mean pool?"),
        (("pool: {queue", "slurm: {queue"), "hosts[0].slurm: set launcher: slurm to use these settings"),
        (("launcher: pool\npool: {max_jobs: 1}", "launcher: ssh\nssh: {}"), "ssh: unknown key (known: "),
        (("launcher: pool", "launcher: kube"), "launcher: unknown launcher 'kube' (known: pool, slurm, ssh)"),
    ],
)
def test_a_launchers_sections_are_checked_by_its_own_models_and_rules_with_their_lines(
    tmp_path, with_pool, edit, line
):
    text = POOL.replace(*edit)
    assert text != POOL
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_cluster(path)
    first = str(info.value).splitlines()[0]  # a section of the wrong launcher on the host too: its own line
    where, said = first.split(": ", 1)
    assert where.startswith(str(path)) and said.startswith(line), first


def test_a_null_section_is_no_section(tmp_path, with_pool):
    text = POOL.replace("launcher: pool\npool: {max_jobs: 1}", "slurm: null")
    text = text.replace("pool: {queue: fast}", "pool: null")
    assert load_cluster(write(tmp_path, text)).launcher == "ssh"


class Recording(DirectLauncher):
    """Returns fixed answers; the lifecycle must keep them."""

    def capture_environment(self, transport: Transport) -> Optional[Dict[str, Any]]:
        return {"hostname": "here"}

    def build(self, transport: Transport, log: Path) -> Built:
        return Built(runner_path="/srv/runner/r", environment={"image_origin": "built"})


def test_the_lifecycle_keeps_what_its_launcher_returns(tmp_path):
    (tmp_path / "val").mkdir()
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    text = POOL.replace("launcher: pool\npool: {max_jobs: 1}\n", "")
    text = text.replace(",\n     pool: {queue: fast}", "")
    text = text.replace("/d}", "%s}, workdir: %s" % (tmp_path / "val", work))
    cluster = load_cluster(write(tmp_path, text))
    known = vendors.discover()
    store = Store(str(tmp_path / "s.sqlite"))
    store.create_run("r1", "hosts.yaml", cluster.model_dump(mode="json"))
    ctx = RunContext("r1", cluster, store, known, tmp_path / "results", lambda *a: None)
    worker = Recording(ctx, cluster.hosts[0]).worker
    try:
        worker.prepare()
    finally:
        worker.close()
    assert (worker.image, worker.runner_path) == (None, "/srv/runner/r")
    assert worker.env == {"hostname": "here", "image_origin": "built"}
    assert store.environments("r1") == {"a": worker.env}
    store.close()


def test_every_launcher_names_its_sections_with_models():
    for name, launcher in orchestrator.launchers.discover().items():
        assert issubclass(launcher, Launcher) and launcher.name == name
        for model in (launcher.settings_class, launcher.host_settings_class):
            assert model is None or issubclass(model, Model)
