"""Bundle manifest and verify on small real folders (the docker and SSH parts: test_bundle_airgap.py)."""

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Dict, Optional

import pytest

from orchestrator.bundle import manifest as mf
from orchestrator.bundle.origin import BUNDLE_REPO, origin_tag
from orchestrator.cli import main
from orchestrator.config import ConfigError, load_cluster

CONFIG = b'{"architecture": "amd64", "config": {"Labels": {"rn50bench.content_hash": "0123456789abcdef"}}}'
IMAGE_ID = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
ARCHIVE = "images/cpu-0123456789abcdef.tar.gz"
RUNNER = "runner/runner-0123456789abcdef.tar"


def fake_archive(
    config: bytes = CONFIG, entries: Optional[list] = None, extra: Optional[Dict[str, bytes]] = None
) -> bytes:
    """A gzip tar shaped as ``docker save`` of one image ID: its config, manifest.json, and ``extra``."""
    name = hashlib.sha256(config).hexdigest() + ".json"
    members = {name: config, "abc/layer.tar": b"\0" * 1024}
    listed = [{"Config": name, "RepoTags": None, "Layers": ["abc/layer.tar"]}] if entries is None else entries
    members.update({"manifest.json": json.dumps(listed).encode()}, **(extra or {}))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def small_bundle(
    root: Path, archive: bytes = b"", wheels: Optional[Dict[str, bytes]] = None, runner: str = "0123456789abcdef"
) -> str:
    """A bundle folder with an image archive, a runner tar, ``wheels`` of a bare host ``b`` and a manifest;
    returns its sha256."""
    files = {ARCHIVE: archive or fake_archive(), RUNNER: b"r"}
    files.update({mf.wheel_path("b", name): data for name, data in (wheels or {}).items()})
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    image = mf.BundleImage(
        vendor="cpu", tag="rn50bench/cpu:0123456789abcdef", image_id=IMAGE_ID, file=ARCHIVE,
        hosts=["a"], built_on={"docker": "20.10"},
    )  # fmt: skip
    manifest = mf.Manifest(
        project={"name": "rn50bench", "version": "0.1.0", "revision": "unknown", "python": "3.11"},
        cluster="hosts.yaml",
        plan=[{"host": "a"}],
        images=[image],
        runner=runner,
        wheels={"b": sorted(wheels)} if wheels else {},
        expected=[mf.Expected(host="a", data="/data/val", weights="random")],
        files=[mf.describe(root, rel) for rel in sorted(files)],
    )
    return mf.write(root, manifest)


def edit_manifest(root: Path, change) -> None:
    """Apply ``change`` to the manifest document and write it back, as a forger would."""
    doc = json.loads((root / mf.MANIFEST).read_text())
    change(doc)
    (root / mf.MANIFEST).write_text(json.dumps(doc))


def verify(root: Path, capsys, *args: str) -> "tuple[int, list, str]":
    code = main(["bundle", "verify", str(root), *args])
    out, err = capsys.readouterr()
    return code, err.splitlines(), out


def test_a_whole_bundle_verifies_and_names_its_manifest_hash(tmp_path: Path, capsys) -> None:
    digest = small_bundle(tmp_path)
    code, errors, out = verify(tmp_path, capsys, "--expect", digest)
    assert (code, errors) == (0, [])
    assert digest in "".join(out.split())
    assert mf.read(tmp_path).digest == digest


def test_verify_without_expect_warns_and_another_digest_is_refused(tmp_path: Path, capsys) -> None:
    digest = small_bundle(tmp_path)
    code, errors, _ = verify(tmp_path, capsys)
    (warning,) = errors
    assert code == 0 and warning.startswith("warning: no --expect SHA256: ")
    code, errors, out = verify(tmp_path, capsys, "--expect", "0" * 64)
    (line,) = errors
    assert code == 1 and "verified" not in out
    assert line == "error: %s/%s: manifest sha256 %s, --expect says %s: not the bundle you expected" % (
        tmp_path, mf.MANIFEST, digest, "0" * 64)  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main(["bundle", "verify", str(tmp_path), "--expect", "not-a-digest"])
    assert exited.value.code == 2 and "is not a sha256" in capsys.readouterr().err


def test_one_byte_changed_is_one_line_naming_the_file(tmp_path: Path, capsys) -> None:
    small_bundle(tmp_path)
    path = tmp_path / RUNNER
    path.write_bytes(b"R")
    code, errors, _ = verify(tmp_path, capsys)
    assert code == 1
    (line,) = errors[1:]  # after the warning that no --expect was given
    assert line.startswith("error: %s/%s: sha256 " % (tmp_path, RUNNER))


def test_missing_extra_and_resized_files_each_get_a_line(tmp_path: Path, capsys) -> None:
    small_bundle(tmp_path)
    (tmp_path / RUNNER).unlink()
    size = (tmp_path / ARCHIVE).stat().st_size
    (tmp_path / ARCHIVE).write_bytes(b"short")
    (tmp_path / "images" / "stray.tar").write_bytes(b"x")
    code, errors, _ = verify(tmp_path, capsys)
    assert code == 1
    assert sorted(line.split("/", len(tmp_path.parts))[-1] for line in errors[1:]) == [
        "%s: 5 bytes, the manifest says %d" % (ARCHIVE, size),
        "images/stray.tar: not in the manifest",
        "%s: missing" % RUNNER,
    ]


def test_a_folder_without_a_valid_manifest_is_one_line(tmp_path: Path, capsys) -> None:
    code, errors, _ = verify(tmp_path, capsys)
    assert code == 1 and len(errors) == 2 and "manifest.json: cannot read" in errors[1]


def test_export_refuses_a_folder_that_is_not_empty(tmp_path: Path, capsys) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    cluster = tmp_path / "hosts.yaml"
    cluster.write_text(
        json.dumps(
            {
                "hosts": [{"name": "a", "vendor": "cpu", "data": {"path": "/d"}, "weights": "random"}],
                "cases": [{}],
            }
        )  # fmt: skip
    )
    assert main(["bundle", "export", "--cluster", str(cluster), "--out", str(tmp_path / "out")]) == 1
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_origin_tag_carries_the_manifest_hash_and_content_hash() -> None:
    digest = "f" * 64
    tag = origin_tag(digest, "rn50bench/cpu:48fc783d4ddb8355")
    assert tag == "%s:%s-48fc783d4ddb8355" % (BUNDLE_REPO, digest)
    assert len(tag.split(":", 1)[1]) <= 128  # docker's limit for a tag


@pytest.mark.parametrize("text, expected", [("", False), ("defaults: {offline: true}\n", True)])
def test_offline_is_a_cluster_default(tmp_path: Path, text: str, expected: bool) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(
        text + "hosts: [{name: a, vendor: cpu, data: {path: /d}, weights: random}]\ncases: [{}]\n"
    )
    assert load_cluster(path).defaults.offline is expected


def test_offline_refuses_the_slurm_launcher_for_docker_hosts(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "launcher: slurm\ndefaults: {offline: true}\n"
        "hosts: [{name: a, address: submit, vendor: cpu, data: {path: /d}, weights: random}]\ncases: [{}]\n"
    )
    with pytest.raises(ConfigError, match="defaults.offline: under launcher slurm"):
        load_cluster(path)


def test_run_offline_refuses_the_slurm_launcher_in_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "launcher: slurm\n"
        "hosts: [{name: a, address: submit, vendor: cpu, data: {path: /d}, weights: random}]\ncases: [{}]\n"
    )
    assert main(["run", "--cluster", str(path), "--offline"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: run --offline: defaults.offline: under launcher slurm")
