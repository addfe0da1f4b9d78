"""Bundle manifest and verify on small real folders (the docker and SSH parts: test_bundle_airgap.py)."""

import json
from pathlib import Path

import pytest

from orchestrator.bundle import manifest as mf
from orchestrator.bundle.origin import BUNDLE_REPO, origin_tag
from orchestrator.cli import main
from orchestrator.config import ConfigError, load_cluster

IMAGE_ID = "sha256:" + "ab" * 32


def small_bundle(root: Path) -> str:
    """A bundle folder with an 'image' archive, a runner tar and a manifest; returns its sha256."""
    for rel, data in (
        ("images/cpu-0123.tar.gz", b"not really an image" * 100),
        ("runner/runner-9.tar", b"r"),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    image = mf.BundleImage(
        vendor="cpu", tag="rn50bench/cpu:0123", image_id=IMAGE_ID, file="images/cpu-0123.tar.gz",
        hosts=["a"], built_on={"docker": "20.10"},
    )  # fmt: skip
    manifest = mf.Manifest(
        project={"name": "rn50bench", "version": "0.1.0", "revision": "unknown", "python": "3.11"},
        cluster="hosts.yaml",
        plan=[{"host": "a"}],
        images=[image],
        runner="9",
        expected=[mf.Expected(host="a", data="/data/val", weights="random")],
        files=[mf.describe(root, rel) for rel in ("images/cpu-0123.tar.gz", "runner/runner-9.tar")],
    )
    return mf.write(root, manifest)


def verify(root: Path, capsys) -> "tuple[int, list, str]":
    code = main(["bundle", "verify", str(root)])
    out, err = capsys.readouterr()
    return code, err.splitlines(), out


def test_a_whole_bundle_verifies_and_names_its_manifest_hash(tmp_path: Path, capsys) -> None:
    digest = small_bundle(tmp_path)
    code, errors, out = verify(tmp_path, capsys)
    assert (code, errors) == (0, [])
    assert digest in "".join(out.split())
    assert mf.read(tmp_path) == (mf.read(tmp_path)[0], digest)


def test_one_byte_changed_is_one_line_naming_the_file(tmp_path: Path, capsys) -> None:
    small_bundle(tmp_path)
    path = tmp_path / "images" / "cpu-0123.tar.gz"
    data = bytearray(path.read_bytes())
    data[7] ^= 0x20
    path.write_bytes(bytes(data))
    code, errors, _ = verify(tmp_path, capsys)
    assert code == 1
    (line,) = errors
    assert line.startswith("error: %s/images/cpu-0123.tar.gz: sha256 " % tmp_path)


def test_missing_extra_and_resized_files_each_get_a_line(tmp_path: Path, capsys) -> None:
    small_bundle(tmp_path)
    (tmp_path / "runner" / "runner-9.tar").unlink()
    (tmp_path / "images" / "cpu-0123.tar.gz").write_bytes(b"short")
    (tmp_path / "images" / "stray.tar").write_bytes(b"x")
    code, errors, _ = verify(tmp_path, capsys)
    assert code == 1
    assert sorted(line.split("/", len(tmp_path.parts))[-1] for line in errors) == [
        "images/cpu-0123.tar.gz: 5 bytes, the manifest says 1900",
        "images/stray.tar: not in the manifest",
        "runner/runner-9.tar: missing",
    ]


def test_a_folder_without_a_valid_manifest_is_one_line(tmp_path: Path, capsys) -> None:
    code, errors, _ = verify(tmp_path, capsys)
    assert code == 1 and len(errors) == 1 and "manifest.json: cannot read" in errors[0]
    small_bundle(tmp_path)
    doc = json.loads((tmp_path / mf.MANIFEST).read_text())
    doc["files"][0]["path"] = "../escape"
    (tmp_path / mf.MANIFEST).write_text(json.dumps(doc))
    code, errors, _ = verify(tmp_path, capsys)
    assert code == 1 and len(errors) == 1 and "not a bundle manifest" in errors[0]


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
