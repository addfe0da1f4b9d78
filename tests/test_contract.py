"""The contract between orchestrator and runner: every job `plan` makes, rendered as the host runs it, is
read by the runner's own parser as the job meant it, for the lab example and for every vendor x toolkit x
precision the capability matrix allows."""

from pathlib import Path
from typing import Iterator, Tuple

import pytest
import yaml

import vendors
from orchestrator.config.load import load_cluster
from orchestrator.job.plan import Job, expand
from orchestrator.job.stages import RunContext
from orchestrator.launchers.ssh import DirectLauncher
from orchestrator.model.cluster import Cluster
from orchestrator.store import Store
from runner_in_container import cli, contract

REPO = Path(__file__).resolve().parent.parent
LAB_EXAMPLE = REPO / "host_configs" / "lab_example.yaml"


def _every_capability(tmp_path: Path) -> Cluster:
    """The lab example with one case entry per host asking for every toolkit and precision its vendor runs."""
    doc = yaml.safe_load(LAB_EXAMPLE.read_text())
    known = vendors.discover()
    doc["cases"] = [
        {"case": case, "toolkit": toolkit, "precision": list(precisions), "hosts": [host["name"]]}
        for host in doc["hosts"]
        for toolkit, precisions in known[host["vendor"]].toolkits.items()
        for case in contract.CASES
    ]
    path = tmp_path / "every.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_cluster(path)


def _commands(cluster: Cluster, tmp_path: Path) -> Iterator[Tuple[Job, str, list]]:
    """(job, runtime, the argv the host runs) for every job of ``cluster``, on docker and bare hosts."""
    known = vendors.discover()
    jobs, _ = expand(cluster, known)
    assert jobs
    store = Store(str(tmp_path / "s.sqlite"))
    ctx = RunContext("r1", cluster, store, known, tmp_path, lambda *a: None)
    hosts = {host.name: host for host in cluster.hosts}
    for job in jobs:
        for runtime in ("docker", "bare"):
            worker = DirectLauncher(ctx, hosts[job.host].model_copy(update={"runtime": runtime})).worker
            worker.image, worker.runner_path = "rn50bench/x:0123456789abcdef", "/srv/runner/abc"
            worker.workdir = "/var/tmp/rn50bench"  # as prepare() makes it
            yield (
                job,
                runtime,
                worker.job_command(job, "/var/tmp/rn50bench/runs/r1/" + job.job_id).argv(job.device),
            )
    store.close()


@pytest.mark.parametrize("which", ["lab_example", "every_capability"])
def test_the_runner_parses_every_planned_job_as_the_job_meant_it(tmp_path, which):
    cluster = load_cluster(LAB_EXAMPLE) if which == "lab_example" else _every_capability(tmp_path)
    parser = cli.build_parser()
    seen = set()
    for job, runtime, argv in _commands(cluster, tmp_path):
        options = argv[argv.index("runner_in_container") + 1 :]
        args = parser.parse_args(options)  # the runner's parser exits 2 on anything it refuses
        assert (args.case, args.toolkit, args.precision) == (job.case, job.toolkit, job.precision), runtime
        assert (args.batch_size, args.repeat, args.warmup, args.decoder) == (
            job.batch_size,
            job.repeat,
            job.warmup,
            job.decoder,
        )
        seen.add((job.host, job.toolkit, job.precision))
    if which == "every_capability":
        expected = {
            (host.name, toolkit, precision)
            for host in cluster.hosts
            for toolkit, precisions in vendors.discover()[host.vendor].toolkits.items()
            for precision in precisions
        }
        _, skipped = expand(cluster, vendors.discover())  # a toolkit whose optional SDK file is absent
        assert all("needs SDK file" in s.reason for s in skipped)
        assert seen == expected - {(s.host, s.toolkit, s.precision) for s in skipped}


def test_the_runner_options_the_orchestrator_sets_are_checked_as_the_runner_checks_them():
    with pytest.raises(ValueError, match="--batch-size: must be in 1..65536, got 0"):
        contract.render_argv(
            {"case": "resnet50", "data": "/d", "weights": "random", "out": "/o", "batch_size": 0}
        )
    with pytest.raises(ValueError, match="--out: required"):
        contract.render_argv({"case": "resnet50", "data": "/d", "weights": "random"})
    with pytest.raises(ValueError, match="no runner option batch"):
        contract.render_argv({"batch": 1})


def test_every_runner_option_has_help_naming_its_default_or_that_it_is_required():
    for option in contract.OPTIONS:
        assert "default" in option.help or "required" in option.help, option.name
        if option.default is not None:
            assert option.check(option.default) == option.default, option.name
