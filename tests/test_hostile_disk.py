"""Issue 18, item 8: a full results disk, an unwritable --out and a missing base image each give the right
reason in one line, naming the path and the stage, with no traceback.

The full disk is a tmpfs mounted here and filled to the last byte (unmounted after).
"""

import uuid

import pytest

from orchestrator.config.load import load_cluster
from orchestrator.host import doctor
from orchestrator.store import Store
from orchestrator.transport.local import LocalTransport
from tests.test_faults import local_entry, orchestrator, write_cluster
from tests.test_hostile_store import a_store, fill, one_error_line, one_job_cluster, tmpfs
from vendors.cpu import VENDOR as CPU


def test_report_out_names_why_it_cannot_write(tmp_path):
    store = a_store(tmp_path / "store.sqlite")
    line = one_error_line(
        orchestrator("report", "r1", "--store", str(store), "--out", "/proc/version", timeout=60)
    )
    assert (
        line == "error: cannot write /proc/version: no new file can be made in its folder /proc "
        "(No such file or directory)"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = one_error_line(
        orchestrator("report", "r1", "--store", str(store), "--out", str(blocker / "r.md"), timeout=60)
    )
    assert line == "error: cannot write %s: %s is not a folder" % (blocker / "r.md", blocker)


@pytest.mark.docker
def test_doctor_fails_a_host_without_the_base_image(tmp_path, cpu_sdk_dir, docker_engine):
    missing = "local/rn50bench-no-such-base:" + uuid.uuid4().hex[:8]
    image = {"base_image": missing, "sdk_dir": str(cpu_sdk_dir)}
    path = write_cluster(
        tmp_path / "hosts.yaml", tmp_path, [local_entry("here", tmp_path, tmp_path / "w", image)]
    )
    cluster = load_cluster(path)
    probe = doctor._HostProbe(cluster, cluster.hosts[0], CPU, doctor.Limits(), LocalTransport(), 30.0)
    check = probe.image(on_host=True)
    assert (check.status, check.summary) == (doctor.FAIL, "no base image"), check
    assert "its base image %s is not there either" % missing in check.detail
    assert check.fix.startswith("load the base image on the host")
    assert probe.image().status == doctor.SKIP  # the inputs on this machine are complete, the host unknown


@pytest.mark.docker
@pytest.mark.slow
def test_a_full_results_disk_fails_the_job_naming_the_file(tmp_path, cpu_image, cpu_sdk_dir, base_image):
    with tmpfs(tmp_path / "results", "1m") as results:
        path = one_job_cluster(tmp_path, base_image, cpu_sdk_dir, results_dir=str(results))
        fill(results)
        done = orchestrator("run", "--cluster", str(path), timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "During handling" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error: job ")]
    (run,) = Store(str(tmp_path / "store.sqlite"), readonly=True).runs()
    log = results / run["run_id"] / "here.d0.resnet50.pytorch.fp32.bs4" / "runner.log"
    assert ": FAILED_COLLECT: cannot keep the job's log: %s: No space left on device" % log in line, line
