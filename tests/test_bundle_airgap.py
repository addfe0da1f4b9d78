"""Done-when of the air-gapped bundle, on real parts: the CPU image built here is exported, carried over
SSH into a host with its own dockerd in a network namespace with no route out, and a job runs there
offline; a bundle with one byte changed is refused naming the file; an interrupted import resumes
without re-sending what it finished.

Attacks on that host, with few-byte images (``tiny``): an archive holding another image than the manifest
says, named with the lab's tag or unnamed, is refused before anything loads, and no tag reaches it; a tag on
another image (as the old import left it) is not trusted offline and is re-pointed only after import's
checks; ``--expect``; a tag on an unlabelled image is refused by export in one line."""

import gzip
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import pytest

from orchestrator.bundle import manifest as mf
from orchestrator.config.load import load_cluster
from orchestrator.host.images import CONTENT_HASH_LABEL
from orchestrator.host.origin import origin_tag
from orchestrator.host.prepare import host_image_spec
from orchestrator.job import collect
from orchestrator.report import tables
from orchestrator.report.load import load_run
from orchestrator.store import Store
from runner_in_container.data.generate import generate
from tests.test_e2e_cluster import orchestrator
from vendors.cpu import VENDOR as CPU

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.slow]


def said(done: subprocess.CompletedProcess) -> str:
    return done.stdout[-3000:] + done.stderr[-3000:]


def lab_cluster(
    root: Path, airgapped_host, data: Path, image: Dict[str, str], toolkit: str = "onnxruntime"
) -> Path:
    """A cluster file for the lab: one host, the air-gapped one, offline, one ``toolkit`` job; written to
    ``root/hosts.yaml``."""
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
                "image": image,
            }
        ],
        "cases": [{"toolkit": toolkit, "precision": "fp32", "batch_size": 4, "warmup": 1, "runs": 1}],
    }
    path = root / "hosts.yaml"
    path.write_text(json.dumps(cluster))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory, airgapped_host, cpu_image, cpu_sdk_dir, base_image) -> Path:
    """The lab's cluster file for the CPU image."""
    root = tmp_path_factory.mktemp("airgap")
    data = generate(str(root / "set"), images=6, layout="imagefolder")
    return lab_cluster(
        root, airgapped_host, Path(data), {"base_image": base_image, "sdk_dir": str(cpu_sdk_dir)}
    )


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
    manifest, _, digest = mf.read(bundle)
    assert digest in done.stdout
    (image,) = manifest.images
    assert image.tag == cpu_image.tag and image.hosts == ["airgapped"]
    assert (
        image.built_on["docker"]
        and image.built_on["labels"]["rn50bench.content_hash"] == cpu_image.content_hash
    )
    assert (bundle / "sdk" / "cpu").is_dir() and manifest.plan[0]["host"] == "airgapped"
    assert orchestrator("bundle", "verify", str(bundle), "--expect", digest).returncode == 0

    # an import interrupted after the image archive went over (manifest.json cannot be written) ...
    remote = root / "work" / "bundles" / digest
    (remote / mf.MANIFEST).mkdir(parents=True)
    done = orchestrator("bundle", "import", str(bundle), "--cluster", str(lab))
    assert done.returncode == 1 and "manifest.json" in done.stderr, said(done)
    assert mf.describe(remote, image.file).sha256 == manifest.file(image.file).sha256
    assert airgapped_host.docker("image", "inspect", cpu_image.tag).returncode != 0  # not loaded yet
    # ... resumes without sending the archive again, loads it, verifies the image ID, drops the archive
    (remote / mf.MANIFEST).rmdir()
    done = orchestrator("bundle", "import", str(bundle), "--cluster", str(lab), "--expect", digest)
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
    (row,) = tables.environment_rows(load_run(store, run["run_id"]))
    assert row["image"] == "%s (bundle %s)" % (image.tag, digest)
    report = orchestrator("report", run["run_id"], "--store", str(root / "store.sqlite"), "--format", "md")
    assert report.returncode == 0 and "Image (bundle): %s\n" % row["image"] in report.stdout, said(report)


def test_bundle_with_one_byte_changed_is_refused_naming_the_file(lab: Path, tmp_path: Path) -> None:
    bundle = lab.parent / "bundle"
    if not bundle.is_dir():
        done = orchestrator("bundle", "export", "--cluster", str(lab), "--out", str(bundle))
        assert done.returncode == 0, said(done)
    manifest = mf.read(bundle).manifest
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy, copy_function=os.link)  # hard links: no second copy of the image
    runner = next(f.path for f in manifest.files if f.path.startswith("runner/"))
    data = bytearray((copy / runner).read_bytes())
    data[len(data) // 2] ^= 1
    (copy / runner).unlink()  # break the link before writing: the original stays intact
    (copy / runner).write_bytes(bytes(data))

    done = orchestrator("bundle", "verify", str(copy))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()[1:]  # after the warning that no --expect was given
    assert line.startswith("error: %s/%s: sha256 " % (copy, runner))
    done = orchestrator("bundle", "import", str(copy), "--cluster", str(lab))
    assert done.returncode == 1 and runner in done.stderr and "sent" not in done.stdout


def docker(*args: str, host: str = "") -> subprocess.CompletedProcess:
    """The docker client, on this machine's engine or on ``host`` (unix://... of the air-gapped one)."""
    argv = ["docker", *(["-H", host] if host else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def tiny_image(folder: Path, tag: str, label: str) -> str:
    """A few-byte image (one file on scratch: nothing to pull, nothing large to save) tagged ``tag``, with
    the content-hash label ``label`` unless it is ''; its ID."""
    folder.mkdir()
    (folder / "nonce").write_text(uuid.uuid4().hex)
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY nonce /nonce\n")
    argv = ["build", "-q", "-t", tag, *(["--label", "%s=%s" % (CONTENT_HASH_LABEL, label)] if label else [])]
    assert docker(*argv, str(folder)).returncode == 0
    return docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


@dataclass
class TinyLab:
    cluster: Path
    tag: str  # the tag the lab's host needs
    image_id: str  # the image export put into the bundle
    foreign: str  # ID of another image, without labels, tagged ``foreign_tag`` on this machine
    foreign_tag: str
    bundle: Path
    digest: str

    def offline_job(self) -> dict:
        """Run the lab's cluster offline; its one job (it never gets past the image here)."""
        done = orchestrator("run", "--cluster", str(self.cluster))
        assert done.returncode == 1, said(done)
        store = Store(str(self.cluster.parent / "store.sqlite"))
        (job,) = store.jobs(store.runs()[-1]["run_id"])
        return job


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, airgapped_host) -> Iterator[TinyLab]:
    """A lab whose host needs a tag no other test uses (its base image is a name, never built), a tiny
    image under that tag on this machine, a tiny unlabelled foreign one, and the bundle export made."""
    root = tmp_path_factory.mktemp("tiny")
    nonce = uuid.uuid4().hex[:12]
    image = {"base_image": "rn50bench-bundles/never-built:" + nonce}
    cluster = lab_cluster(root, airgapped_host, root, image, toolkit="pytorch")  # needs no SDK file
    spec = host_image_spec(load_cluster(cluster).hosts[0], CPU)
    foreign_tag = "rn50bench-bundles/foreign:" + nonce
    lab = TinyLab(cluster, spec.tag, "", "", foreign_tag, root / "bundle", "")
    try:
        lab.image_id = tiny_image(root / "good", spec.tag, spec.content_hash)
        lab.foreign = tiny_image(root / "foreign", foreign_tag, "")
        done = orchestrator("bundle", "export", "--cluster", str(cluster), "--out", str(lab.bundle))
        assert done.returncode == 0, said(done)
        lab.digest = mf.read(lab.bundle).digest
        yield lab
    finally:
        docker("image", "rm", "--force", spec.tag, foreign_tag, lab.image_id, lab.foreign)
        for ref in (spec.tag, origin_tag(lab.digest or "0" * 64, spec.tag), lab.image_id, lab.foreign):
            airgapped_host.docker("image", "rm", "--force", ref)


def forge(lab: TinyLab, folder: Path, archive: bytes) -> Path:
    """A copy of the bundle whose image archive is ``archive``, its manifest updated to agree with it (as
    whoever made it would): self-consistent, but not the bundle that was exported."""
    shutil.copytree(lab.bundle, folder)
    manifest = mf.read(folder).manifest
    (folder / manifest.images[0].file).write_bytes(archive)
    doc = json.loads((folder / mf.MANIFEST).read_text())
    doc["files"] = [mf.describe(folder, f.path).model_dump() for f in manifest.files]
    (folder / mf.MANIFEST).write_text(json.dumps(doc))
    return folder


def saved(ref: str) -> bytes:
    """``docker save`` of ``ref`` on this machine, gzip."""
    done = subprocess.run(["docker", "save", ref], capture_output=True, timeout=300, check=True)
    return gzip.compress(done.stdout, mtime=0)


def test_an_archive_of_another_image_is_refused_and_tags_nothing(
    tiny: TinyLab, airgapped_host, tmp_path
) -> None:
    # the archive as an attacker makes it: the foreign image named with the tag the lab needs ...
    assert docker("tag", tiny.foreign, tiny.tag).returncode == 0
    try:
        named = saved(tiny.tag)
    finally:
        assert docker("tag", tiny.image_id, tiny.tag).returncode == 0
    # ... or the foreign image under no name at all
    for name, archive, why in (
        ("named", named, "it names the image %r (RepoTags)" % tiny.tag),
        ("unnamed", saved(tiny.foreign),
         "the archive holds image %s, images[0].image_id says %s" % (tiny.foreign, tiny.image_id)),
    ):  # fmt: skip
        forged = forge(tiny, tmp_path / name, archive)
        done = orchestrator("bundle", "import", str(forged), "--cluster", str(tiny.cluster))
        assert done.returncode == 1, said(done)
        warning, line = done.stderr.splitlines()
        assert warning.startswith("warning: no --expect SHA256")
        assert line.startswith("error: %s: images/" % forged) and line.endswith(
            why + " (bundle verify lists every mismatch)"
        )
        assert airgapped_host.docker("image", "inspect", tiny.tag).returncode != 0
        assert airgapped_host.docker("image", "inspect", tiny.foreign).returncode != 0
    job = tiny.offline_job()
    assert job["state"] == "FAILED_BUILD" and "is not on host airgapped" in job["reason"]


def test_a_tag_on_another_image_is_not_trusted_and_import_checks_before_it_tags(
    tiny: TinyLab, airgapped_host
) -> None:
    # the host holds the foreign image under the lab's tag (as the old import left it on a mismatch)
    save = subprocess.Popen(["docker", "save", tiny.foreign], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "-H", airgapped_host.docker_host, "load", "-q"], stdin=save.stdout,
                          capture_output=True, timeout=300, check=False)  # fmt: skip
    assert save.wait(timeout=60) == 0 and load.returncode == 0
    assert airgapped_host.docker("tag", tiny.foreign, tiny.tag).returncode == 0
    job = tiny.offline_job()
    assert job["state"] == "FAILED_BUILD" and "not the image its tag names" in job["reason"], job["reason"]
    assert "\n" not in job["reason"]

    done = orchestrator(
        "bundle", "import", str(tiny.bundle), "--cluster", str(tiny.cluster), "--expect", "f" * 64
    )
    assert done.returncode == 1 and done.stderr.splitlines() == [
        "error: %s/%s: manifest sha256 %s, --expect says %s: not the bundle you expected"
        % (tiny.bundle, mf.MANIFEST, tiny.digest, "f" * 64)
    ], said(done)

    done = orchestrator(
        "bundle", "import", str(tiny.bundle), "--cluster", str(tiny.cluster), "--expect", tiny.digest
    )
    assert done.returncode == 0 and done.stderr == "", said(done)
    assert "loaded %s, image ID %s verified" % (tiny.tag, tiny.image_id) in done.stdout
    for tag in (tiny.tag, origin_tag(tiny.digest, tiny.tag)):
        found = airgapped_host.docker("image", "inspect", "--format", "{{.Id}}", tag)
        assert found.stdout.strip() == tiny.image_id
    done = orchestrator(
        "bundle", "import", str(tiny.bundle), "--cluster", str(tiny.cluster), "--expect", tiny.digest
    )
    assert done.returncode == 0 and "loaded already; nothing sent" in done.stdout, said(done)


def test_export_of_a_tag_on_an_unlabelled_image_is_one_line(tiny: TinyLab, airgapped_host, tmp_path) -> None:
    image = {"base_image": "rn50bench-bundles/other:" + uuid.uuid4().hex}
    cluster = lab_cluster(tmp_path, airgapped_host, tmp_path, image, toolkit="pytorch")
    spec = host_image_spec(load_cluster(cluster).hosts[0], CPU)
    assert docker("tag", tiny.foreign, spec.tag).returncode == 0  # an image without any label
    try:
        done = orchestrator("bundle", "export", "--cluster", str(cluster), "--out", str(tmp_path / "out"))
    finally:
        docker("image", "rm", spec.tag)
    assert done.returncode == 1, said(done)
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: image %s on host control machine is image %s, labelled %s=''" % (
        spec.tag, tiny.foreign, CONTENT_HASH_LABEL))  # fmt: skip
    assert not (tmp_path / "out").exists()
