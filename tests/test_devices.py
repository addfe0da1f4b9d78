"""A two-device host (``hosts[].devices: [0, 1]``) runs one runner per device, in parallel.

Through ``scheduler.run_all`` on this machine, runtime bare: the CPU vendor is given the visible-devices
variable an accelerator vendor has (``CUDA_VISIBLE_DEVICES``), and the host's interpreter is a wrapper that
records, for each runner process, the variable it saw, its pid and its arguments, then runs this Python.
"""

import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from orchestrator.config.load import load_cluster
from orchestrator.job.lifecycle import RunContext
from orchestrator.job.plan import expand, job_id
from orchestrator.run.scheduler import run_all
from orchestrator.store import Store
from runner_in_container.data.generate import generate
from vendors.cpu import Cpu

pytestmark = [pytest.mark.slow]


class PlacedCpu(Cpu):
    """The CPU vendor, placing each job on its device the way accelerator vendors do."""

    visible_devices_env = "CUDA_VISIBLE_DEVICES"


def recording_python(folder: Path) -> Tuple[Path, Path]:
    """An interpreter wrapper that appends ``<visible> <pid> <args>`` to a record; (wrapper, record)."""
    record = folder / "runners.txt"
    wrapper = folder / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        'printf \'%%s %%s %%s\\n\' "${CUDA_VISIBLE_DEVICES-unset}" "$$" "$*" >> %s\n'
        'exec %s "$@"\n' % (record, sys.executable)
    )
    wrapper.chmod(0o755)
    return wrapper, record


def test_a_two_device_host_runs_one_runner_per_device_in_parallel(tmp_path):
    data = generate(str(tmp_path / "set"), images=2, layout="imagefolder")
    python, record = recording_python(tmp_path)
    (tmp_path / "hosts.yaml").write_text(
        "hosts:\n"
        "  - name: twin\n"
        "    address: local\n"
        "    vendor: cpu\n"
        "    runtime: bare\n"
        "    python: %s\n"
        "    devices: [0, 1]\n"
        "    workdir: %s\n"
        "    workers: 1\n"
        "    data: {path: %s}\n"
        "    weights: random\n"
        "cases:\n"
        "  - {toolkit: pytorch, precision: fp32, batch_size: 1, repeat: 2, warmup: 0, runs: 1}\n"
        % (python, tmp_path / "work", data)
    )
    cluster = load_cluster(tmp_path / "hosts.yaml")
    known = {"cpu": PlacedCpu()}
    jobs, _ = expand(cluster, known)
    names = [job_id("twin", device, "resnet50", "pytorch", "fp32", 1) for device in (0, 1)]
    assert [(j.job_id, j.device) for j in jobs] == list(zip(names, (0, 1)))
    store = Store(str(tmp_path / "store.sqlite"))
    store.create_run("r1", str(tmp_path / "hosts.yaml"), cluster.model_dump(mode="json"))
    for job in jobs:
        store.add_job("r1", job.job_id, job.host, "cpu", job.as_dict())
    rows: List[Tuple[str, int, Dict]] = []
    ctx = RunContext("r1", cluster, store, known, tmp_path / "results", lambda *row: rows.append(row))

    assert run_all(ctx, jobs) == dict.fromkeys(names, "OK")

    stored = {j["job_id"]: j for j in store.jobs("r1")}
    assert max(j["started_at"] for j in stored.values()) < min(j["finished_at"] for j in stored.values())
    results = store.results("r1")
    for device, name in enumerate(names):
        doc = results[name]["result"]
        assert doc["status"] == "ok" and doc["stages"]["infer"]["images"] == 2 * 2
        assert Path(stored[name]["log_path"]).parent.name == name
        started = [fields for host, line, fields in rows if line == device and fields.get("stage") == "start"]
        assert [f["job"] for f in started] == [name]  # the device's own progress line
    seen = {}
    for line in record.read_text().splitlines():
        visible, pid, args = line.split(" ", 2)
        out = args.split()[args.split().index("--out") + 1]
        seen[os.path.basename(out)] = (visible, pid)
    assert {name: visible for name, (visible, _) in seen.items()} == {names[0]: "0", names[1]: "1"}
    assert len({pid for _, pid in seen.values()}) == 2  # one runner process per device
