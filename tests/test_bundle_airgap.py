"""Done-when of the air-gapped bundle, on real parts: the CPU image built here is exported, carried over
SSH into a host with its own dockerd in a network namespace with no route out, and a job runs there
offline; a bundle with one byte changed is refused naming the file; an interrupted import resumes
without re-sending what it finished."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator import collect
from orchestrator.bundle import manifest as mf
from orchestrator.bundle.origin import origin_tag
from orchestrator.report import tables
from orchestrator.store import Store
from runner_in_container.data.generate import generate
from tests.test_e2e_cluster import orchestrator

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.slow]


def said(done: subprocess.CompletedProcess) -> str:
    return done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, airgapped_host, cpu_image, cpu_sdk_dir, base_image) -> Path:
    """The lab's cluster file: one host, the air-gapped one, offline."""
    root = tmp_path_factory.mktemp("airgap")
    data = generate(str(root / "set"), images=6, layout="imagefolder")
    ssh = airgapped_host.ssh
    cluster = {
        "store": str(root / "store.sqlite"),
        "results_dir": str(root / "results"),
        "defaults": {"offline": True},
        "hosts": [
            {
                "name": "airgapped",
                "address": ssh.address,
                "port": ssh.port,
                "user": ssh.user,
                "key_file": ssh.key_file,
                "known_hosts": ssh.known_hosts,
                "vendor": "cpu",
                "workdir": str(root / "work"),
                "workers": 2,
                "data": {"path": str(data)},
                "weights": "random",
                "image": {"base_image": base_image, "sdk_dir": str(cpu_sdk_dir)},
            }
        ],
        "cases": [{"toolkit": "onnxruntime", "precision": "fp32", "batch_size": 4, "warmup": 1}],
    }
    path = root / "hosts.yaml"
    path.write_text(json.dumps(cluster))  # JSON is YAML
    return path


def test_bundle_carries_the_cpu_image_into_an_airgapped_host(lab: Path, airgapped_host, cpu_image) -> None:
    root = lab.parent
    assert airgapped_host.ssh.netns is None or "default" not in airgapped_host.routes()  # no route out
    assert airgapped_host.docker("image", "inspect", cpu_image.tag).returncode != 0  # never built it there

    # offline and without the image: one line naming the image and the bundle command, nothing built
    done = orchestrator("run", "--cluster", str(lab))
    assert done.returncode == 1
    (run,) = Store(str(root / "store.sqlite")).runs()
    (job,) = Store(str(root / "store.sqlite")).jobs(run["run_id"])
    assert job["state"] == "FAILED_BUILD"
    assert cpu_image.tag in job["reason"] and "bundle import" in job["reason"] and "\n" not in job["reason"]
    assert airgapped_host.docker("image", "inspect", cpu_image.tag).returncode != 0

    bundle = root / "bundle"
    done = orchestrator("bundle", "export", "--cluster", str(lab), "--out", str(bundle))
    assert done.returncode == 0, said(done)
    manifest, digest = mf.read(bundle)
    assert digest in done.stdout
    (image,) = manifest.images
    assert image.tag == cpu_image.tag and image.hosts == ["airgapped"]
    assert (
        image.built_on["docker"]
        and image.built_on["labels"]["rn50bench.content_hash"] == cpu_image.content_hash
    )
    assert (bundle / "sdk" / "cpu").is_dir() and manifest.plan[0]["host"] == "airgapped"
    assert orchestrator("bundle", "verify", str(bundle)).returncode == 0

    # an import interrupted after the image archive went over (manifest.json cannot be written) ...
    remote = root / "work" / "bundles" / digest
    (remote / mf.MANIFEST).mkdir(parents=True)
    done = orchestrator("bundle", "import", str(bundle), "--cluster", str(lab))
    assert done.returncode == 1 and "manifest.json" in done.stderr, said(done)
    assert mf.describe(remote, image.file).sha256 == manifest.file(image.file).sha256
    assert airgapped_host.docker("image", "inspect", cpu_image.tag).returncode != 0  # not loaded yet
    # ... resumes without sending the archive again, loads it, verifies the image ID, drops the archive
    (remote / mf.MANIFEST).rmdir()
    done = orchestrator("bundle", "import", str(bundle), "--cluster", str(lab))
    assert done.returncode == 0, said(done)
    assert "sent 0 files, 1 were there already" in done.stdout and image.image_id in done.stdout
    assert (remote / mf.MANIFEST).is_file() and not (remote / image.file).exists()
    found = airgapped_host.docker("image", "inspect", "--format", "{{.Id}}", origin_tag(digest, image.tag))
    assert found.stdout.strip() == image.image_id

    done = orchestrator("bundle", "import", str(bundle), "--cluster", str(lab))
    assert done.returncode == 0 and "loaded already; nothing sent" in done.stdout, said(done)

    # the job runs there offline, with the figures of any run and the bundle in the environment table
    done = orchestrator("run", "--cluster", str(lab))
    assert done.returncode == 0, said(done)
    assert "built" not in done.stderr
    store = Store(str(root / "store.sqlite"))
    run = store.runs()[-1]
    (job,) = store.jobs(run["run_id"])
    assert job["state"] == "OK"
    result = store.results(run["run_id"])[job["job_id"]]
    collect.read(result["result"])
    for stage in ("val", "infer"):
        assert result["result"]["stages"][stage]["images"] == 6
    assert result["derived"]["p_infer_core"] > 0
    env = store.environments(run["run_id"])["airgapped"]
    assert env["bundle"] == digest and env["image_id"] == image.image_id
    (row,) = tables.environment_rows(store, run["run_id"])
    assert row["image"] == "%s (bundle %s)" % (image.tag, digest)
    report = orchestrator("report", run["run_id"], "--store", str(root / "store.sqlite"), "--format", "md")
    assert report.returncode == 0 and "Image (bundle): %s\n" % row["image"] in report.stdout, said(report)


def test_bundle_with_one_byte_changed_is_refused_naming_the_file(lab: Path, tmp_path: Path) -> None:
    bundle = lab.parent / "bundle"
    if not bundle.is_dir():
        done = orchestrator("bundle", "export", "--cluster", str(lab), "--out", str(bundle))
        assert done.returncode == 0, said(done)
    manifest, _ = mf.read(bundle)
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy, copy_function=os.link)  # hard links: no second copy of the image
    runner = next(f.path for f in manifest.files if f.path.startswith("runner/"))
    data = bytearray((copy / runner).read_bytes())
    data[len(data) // 2] ^= 1
    (copy / runner).unlink()  # break the link before writing: the original stays intact
    (copy / runner).write_bytes(bytes(data))

    done = orchestrator("bundle", "verify", str(copy))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: %s/%s: sha256 " % (copy, runner))
    done = orchestrator("bundle", "import", str(copy), "--cluster", str(lab))
    assert done.returncode == 1 and runner in done.stderr and "sent" not in done.stdout
