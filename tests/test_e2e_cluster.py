"""End to end: `python -m orchestrator run` on two hosts at once, one local and one reached over SSH in its
own network namespace, both building and running the real CPU vendor image on a real dockerd."""

import html
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orchestrator.store import Store
from runner_in_container.cases import discover
from runner_in_container.data.generate import generate
from runner_in_container.hashing import sha256_file
from runner_in_container.toolkits.onnx_export import export_onnx

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory) -> Path:
    """6 generated images: with batch size 4 the last batch is padded."""
    return Path(generate(str(tmp_path_factory.mktemp("e2e") / "set"), images=6, layout="imagefolder"))


@pytest.fixture(scope="module")
def vendor_onnx(tmp_path_factory) -> Path:
    """resnet50 (random init) exported for batch size 4 under a vendor's name: issue 32, item 3."""
    case = discover()["resnet50"]
    path = tmp_path_factory.mktemp("vendor") / "rn50-vendor-tuned.onnx"
    export_onnx(case.build(case.resolve_weights("random")), torch.zeros(4, 3, 224, 224), str(path))
    return path


def cluster_file(tmp_path: Path, data: Path, ssh_host, sdk_dir: Path, base_image: str) -> Path:
    image = {"base_image": base_image, "sdk_dir": str(sdk_dir)}
    cluster = {
        "store": str(tmp_path / "store.sqlite"),
        "results_dir": str(tmp_path / "results"),
        "hosts": [
            {
                "name": "here",
                "address": "local",
                "vendor": "cpu",
                "workdir": str(tmp_path / "work-here"),
                "workers": 2,
                "data": {"path": str(data)},
                "weights": "random",
                "image": image,
            },
            {
                "name": "remote",
                "address": ssh_host.address,
                "port": ssh_host.port,
                "user": ssh_host.user,
                "key_file": str(ssh_host.key_file),
                "known_hosts": str(ssh_host.known_hosts),
                "vendor": "cpu",
                "workdir": str(tmp_path / "work-remote"),
                "workers": 2,
                "data": {"path": str(data)},
                "weights": "random",
                "image": image,
                "peaks": {"fp32": {"flops": 1e12, "source": "the lab's own figure"}},  # issue 32, item 4
            },
        ],
        "cases": [{"toolkit": "onnxruntime", "precision": "fp32", "batch_size": 4, "warmup": 1, "runs": 1}],
    }
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps(cluster))  # JSON is YAML
    return path


def orchestrator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )


def test_two_hosts_local_and_ssh(
    tmp_path, sample_set, ssh_host, cpu_image, cpu_sdk_dir, base_image, vendor_onnx
):
    path = cluster_file(tmp_path, sample_set, ssh_host, cpu_sdk_dir, base_image)
    cluster = json.loads(path.read_text())
    cluster["hosts"][0]["onnx_path"] = str(vendor_onnx)  # run by onnxruntime there, not exported
    path.write_text(json.dumps(cluster))
    done = orchestrator("run", "--cluster", str(path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "results of run" in done.stdout and "environment" in done.stdout
    assert "built" not in done.stderr  # the fixture built the image: same content hash, no rebuild

    store = Store(str(tmp_path / "store.sqlite"))
    (run,) = store.runs()
    jobs = {j["host"]: j for j in store.jobs(run["run_id"])}
    assert set(jobs) == {"here", "remote"}
    assert all(j["state"] == "OK" and j["reason"] is None for j in jobs.values())
    results = store.results(run["run_id"])
    for job in jobs.values():
        found = results[job["job_id"]]
        doc, derived = found["result"], found["derived"]
        assert doc["status"] == "ok"
        for stage in ("val", "infer"):
            figures = doc["stages"][stage]
            assert figures["images"] == 6 and figures["padded_slots"] == 2
            # the in-pipeline core is a sub-window of the whole one; the core pass is timed on its own
            in_pipeline = figures["throughput_core_in_pipeline_img_per_s"]
            assert in_pipeline >= figures["throughput_whole_img_per_s"] > 0
            assert figures["throughput_core_img_per_s"] > 0 and figures["core_pass"]["batches"] > 0
        assert derived["tool"] == "onnxruntime" and doc["config"]["batch_size"] == 4
        if job["host"] == "here":
            assert derived["mfu"] is None and "no peak" in derived["mfu_note"]  # CPUs have no peak table
            given = {
                "path": "/artefacts/onnx_path/rn50-vendor-tuned.onnx",
                "sha256": sha256_file(str(vendor_onnx)),
            }
            assert doc["artefacts"] == {"onnx": given, "engine": None}
        else:  # the host's own peak, named as the source
            assert derived["mfu"] > 0 and derived["peak_flops"] == 1e12 and derived["mfu_note"] is None
            assert derived["peak_source"] == "the host's peaks: the lab's own figure"
        assert derived["acc_meaningful"] is False
        assert doc["environment"]["versions"]["torch"].startswith("1.13")  # Debian's torch in the image
        assert Path(job["log_path"]).read_text().count('"ev": "result"') == 1
        host_series = store.host_samples(run["run_id"])[job["job_id"]]  # docker, local or SSH
        assert host_series["samples"] and set(host_series["windows"]) == {"val", "infer"}, host_series
        assert derived["host_cpu_pct"] is not None and derived["host_mem_used_gib"] > 0

    envs = store.environments(run["run_id"])
    assert set(envs) == {"here", "remote"}
    for env in envs.values():
        assert env["kernel"] and env["os"] and env["docker"] and env["cpu_count"] >= 1
        assert env["memory_gib"] > 0 and env["accelerators"]

    report = orchestrator(
        "report", run["run_id"], "--store", str(tmp_path / "store.sqlite"), "--format", "md"
    )
    assert report.returncode == 0, report.stderr
    assert report.stdout.count("| OK |") == 2
    given = "onnx /artefacts/onnx_path/rn50-vendor-tuned.onnx sha256 %s" % sha256_file(str(vendor_onnx))
    assert "- Vendor's own artefacts (ONNX, engine): %s\n" % given in report.stdout
    assert "- Vendor's own artefacts (ONNX, engine): none (made in the run)\n" in report.stdout
    page = orchestrator(
        "report", run["run_id"], "--store", str(tmp_path / "store.sqlite"), "--format", "html"
    )
    measured = html.unescape(page.stdout)  # how it was measured
    assert "1e+12, the host's peaks: the lab's own figure" in measured


def test_second_run_rebuilds_nothing_and_unreachable_host_fails_alone(
    tmp_path, sample_set, ssh_host, cpu_image, cpu_sdk_dir, base_image, unreachable_address
):
    path = cluster_file(tmp_path, sample_set, ssh_host, cpu_sdk_dir, base_image)
    cluster = json.loads(path.read_text())
    cluster["hosts"][1]["address"] = unreachable_address
    cluster["hosts"][1]["name"] = "down"
    cluster["hosts"][1]["timeouts"] = {"connect": 3}  # the down host only, not the working one
    cluster["cases"][0]["stages"] = ["infer"]  # issue 32, item 3: no val stage
    path.write_text(json.dumps(cluster))
    done = orchestrator("run", "--cluster", str(path))
    assert done.returncode == 1
    store = Store(str(tmp_path / "store.sqlite"))
    (run,) = store.runs()
    states = {j["host"]: (j["state"], j["reason"]) for j in store.jobs(run["run_id"])}
    assert states["here"] == ("OK", None)
    state, reason = states["down"]
    assert state == "FAILED_CONNECT" and unreachable_address in reason and "\n" not in reason
    assert "down" in done.stdout.splitlines()[-1] or "down" in done.stderr
    (found,) = store.results(run["run_id"]).values()
    assert found["result"]["stages"]["val"] is None and found["derived"]["p_val_whole"] is None
    report = orchestrator(
        "report", run["run_id"], "--store", str(tmp_path / "store.sqlite"), "--format", "md"
    )
    assert report.returncode == 0 and "| not run |" in report.stdout  # the val figures: not run, never 0
