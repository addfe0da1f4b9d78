"""Bundle manifest and verify on small real folders (the docker and SSH parts: test_bundle_airgap.py)."""

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Dict, Optional

import pytest
from rich.console import Console

import vendors
from orchestrator.bundle import importer
from orchestrator.bundle import manifest as mf
from orchestrator.cli import main
from orchestrator.config.load import load_cluster
from orchestrator.host import images
from orchestrator.host.origin import BUNDLE_REPO, origin_tag
from orchestrator.model.fields import ConfigError
from orchestrator.transport.local import LocalTransport
from tests.test_hostile_workdir import stranger  # noqa: F401 - a fixture: a second uid

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
    root: Path,
    archive: bytes = b"",
    wheels: Optional[Dict[str, bytes]] = None,
    runner: str = "0123456789abcdef",
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


def test_one_byte_changed_in_an_image_archive_is_told_as_such(tmp_path: Path, capsys) -> None:
    small_bundle(tmp_path)
    data = bytearray((tmp_path / ARCHIVE).read_bytes())
    data[len(data) // 2] ^= 0x20  # inside the deflate stream: the gzip breaks too
    (tmp_path / ARCHIVE).write_bytes(bytes(data))
    line = one_error(*verify(tmp_path, capsys)[:2])
    assert line.startswith("error: %s/%s: sha256 %s, the manifest says " % (
        tmp_path, ARCHIVE, hashlib.sha256(data).hexdigest()))  # fmt: skip


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
                "hosts": [
                    {"name": "a", "address": "local", "vendor": "cpu", "data": {"path": "/d"},
                     "weights": "random"}
                ],
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
        text
        + "hosts: [{name: a, address: local, vendor: cpu, data: {path: /d}, weights: random}]\ncases: [{}]\n"
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


def one_error(code: int, errors: list) -> str:
    """The one error line after the no-expect warning; fails unless the command exited 1."""
    assert code == 1 and errors[0].startswith("warning: no --expect")
    (line,) = errors[1:]
    return line


@pytest.mark.parametrize(
    "change, said",
    [
        (
            lambda d: d["images"][0].update(file="../../../etc/passwd"),
            "images[0].file: '../../../etc/passwd' is",
        ),
        (lambda d: d["files"][0].update(path="/etc/passwd"), "files[0].path: '/etc/passwd' is"),
        (lambda d: d.update(wheels={"b": ["../x.whl"]}), "wheels.b[0]: '../x.whl' is"),
        (lambda d: d.update(wheels={"..": ["x.whl"]}), "wheels: key '..' is"),
        (
            lambda d: d["images"][0].update(file="images/other.tar.gz"),
            "images[0].file: images/other.tar.gz is not",
        ),
    ],
)
def test_a_path_outside_the_bundle_is_refused_naming_its_field(tmp_path: Path, capsys, change, said) -> None:
    small_bundle(tmp_path)
    edit_manifest(tmp_path, change)
    line = one_error(*verify(tmp_path, capsys)[:2])
    assert line.startswith("error: %s/manifest.json: not a bundle manifest: %s" % (tmp_path, said)), line
    cluster = tmp_path.parent / ("%s.yaml" % tmp_path.name)
    cluster.write_text(
        "hosts: [{name: a, address: local, vendor: cpu, data: {path: /d}, weights: random}]\ncases: [{}]\n"
    )
    code = main(["bundle", "import", str(tmp_path), "--cluster", str(cluster)])  # crashed before
    assert one_error(code, capsys.readouterr().err.splitlines()).endswith(
        line.split("not a bundle manifest: ")[1]
    )


def deep(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda p: p.symlink_to("/dev/zero"), "a symbolic link: only regular files are read"),
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 5)), "not a regular file"),
        (lambda p: os.truncate(p.open("w").name, 600 << 20), "larger than 16 MiB"),
        (deep, "nested deeper than 32 levels"),
    ],
    ids=["dev-zero", "fifo", "device", "600MB", "deep"],
)
def test_manifest_is_read_within_bounds(tmp_path: Path, capsys, make, said) -> None:
    make(tmp_path / mf.MANIFEST)
    started = time.monotonic()
    line = one_error(*verify(tmp_path, capsys)[:2])
    assert line == "error: %s/manifest.json: %s" % (tmp_path, said) and time.monotonic() - started < 5


def test_links_fifos_and_devices_are_named_never_followed(tmp_path: Path, capsys) -> None:
    small_bundle(tmp_path)
    outside = tmp_path.parent / ("%s-outside" % tmp_path.name)
    (outside / "images").mkdir(parents=True)
    shutil.copy(tmp_path / ARCHIVE, outside / ARCHIVE)  # the same bytes, reached through a link
    shutil.move(str(tmp_path / "images"), str(tmp_path / "moved"))
    (tmp_path / "images").symlink_to(outside / "images")
    (tmp_path / RUNNER).unlink()
    (tmp_path / RUNNER).symlink_to("/etc/passwd")
    (tmp_path / "stray-link").symlink_to("/etc")
    os.mkfifo(tmp_path / "runner" / "fifo")
    os.mknod(tmp_path / "runner" / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    code, errors, _ = verify(tmp_path, capsys)
    assert code == 1
    assert [line.split("/", len(tmp_path.parts))[-1] for line in errors[1:]] == [
        "%s: images is a symbolic link: only regular files inside the bundle are read" % ARCHIVE,
        "%s: a symbolic link, not a regular file" % RUNNER,
        "images: a symbolic link, not in the manifest",
        "moved/%s: not in the manifest" % ARCHIVE.split("/")[1],
        "runner/fifo: a FIFO, not in the manifest",
        "runner/null: a character device, not in the manifest",
        "stray-link: a symbolic link, not in the manifest",
    ]


@pytest.mark.parametrize(
    "archive, said",
    [
        (
            fake_archive(b'{"other": 1}'),
            "the archive holds image sha256:%s, images[0].image_id says %s"
            % (hashlib.sha256(b'{"other": 1}').hexdigest(), IMAGE_ID),
        ),
        (
            fake_archive(
                entries=[
                    {
                        "Config": hashlib.sha256(CONFIG).hexdigest() + ".json",
                        "RepoTags": ["rn50bench/cpu:0123456789abcdef"],
                    }
                ]
            ),
            "it names the image 'rn50bench/cpu:0123456789abcdef' (RepoTags)",
        ),
        (fake_archive(extra={"repositories": b"{}"}), "it names images (a repositories file)"),
        (
            fake_archive(
                extra={
                    "index.json": b'{"manifests": [{"annotations": '
                    b'{"io.containerd.image.name": "local/debian:bookworm"}}]}'
                }
            ),
            "index.json names the image it holds",
        ),
        (
            fake_archive(entries=[{"Config": "a.json"}, {"Config": "b.json"}]),
            "manifest.json does not list exactly one image",
        ),
        (
            fake_archive(entries=[{"Config": "abc/layer.tar/../../../etc/passwd"}]),
            "its config 'abc/layer.tar/../../../etc/passwd' is no regular file of the archive",
        ),
        (b"not gzip at all", "not a gzip docker save archive: not a gzip file"),
    ],
    ids=["other-image", "repotags", "repositories", "index-name", "two-images", "config-outside", "not-gzip"],
)
def test_an_archive_that_is_not_one_unnamed_image_is_refused(tmp_path: Path, capsys, archive, said) -> None:
    small_bundle(tmp_path, archive=archive)  # self-consistent: its sha256 is in the manifest
    line = one_error(*verify(tmp_path, capsys)[:2])
    assert line == "error: %s/%s: %s" % (tmp_path, ARCHIVE, said)


def test_a_config_written_through_a_link_is_refused(tmp_path: Path, capsys) -> None:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        link = tarfile.TarInfo("d")
        link.type, link.linkname = tarfile.SYMTYPE, "."
        tar.addfile(link)
        info = tarfile.TarInfo("d/cfg.json")
        tar.addfile(info, io.BytesIO(b""))
    small_bundle(tmp_path, archive=out.getvalue())
    assert one_error(*verify(tmp_path, capsys)[:2]).endswith("member 'd/cfg.json' is written through a link")


@pytest.fixture
def shared_dir():
    """A root-owned folder every uid can enter (tmp_path's parents are root's alone)."""
    path = Path("/var/tmp") / ("rn50bench-bundles-" + uuid.uuid4().hex[:8])
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(str(path), ignore_errors=True)


def verify_as(ids, root: Path) -> str:
    """``bundle verify`` run as the uid ``ids`` in a forked child (this interpreter lives in root's home,
    which others cannot enter); its stderr."""
    verify_in_child = mf.read  # everything verify imports is loaded here, in the parent
    assert verify_in_child
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the uid, run verify, hand back its stderr
        code = 70
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                main(["bundle", "verify", str(root)])
            os.write(write_end, err.getvalue().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    return said


def test_verify_never_tells_another_uid_the_size_of_a_root_only_file(
    shared_dir: Path,
    stranger,  # noqa: F811 - the fixture imported above
    capsys,
) -> None:
    secret = shared_dir / "secret"
    secret.write_bytes(b"s" * 54321)
    secret.chmod(0o600)
    bundle = shared_dir / "bundle"
    bundle.mkdir()
    small_bundle(bundle)
    (bundle / ARCHIVE).unlink()
    (bundle / ARCHIVE).symlink_to(secret)  # the stranger's link to root's file
    (bundle / RUNNER).unlink()
    subprocess.run(["chown", "-R", "-h", "%d:%d" % stranger, str(bundle)], check=True)
    os.link(secret, bundle / RUNNER)  # and a root-only file inside the bundle
    (bundle / "private").mkdir(mode=0o700)  # and a root-only folder
    verify(bundle, capsys)  # as root first: every module verify needs is imported before the fork
    said = verify_as(stranger, bundle)
    lines = said.splitlines()[1:]
    assert [line.split("/", len(bundle.parts))[-1] for line in lines] == [
        "%s: a symbolic link, not a regular file" % ARCHIVE,
        "%s: cannot read: Permission denied" % RUNNER,
        "private: cannot read the folder: Permission denied",
    ]
    assert "54321" not in said


WHEEL = "w-1.0-py3-none-any.whl"


@pytest.fixture
def bare_import(tmp_path: Path):
    """(bundle folder, its sha256, import it -> failure lines, the host's bundle folder): a bundle for one
    bare host on this machine, holding one wheel."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    runner = images.content_hash(images.runner_files())
    digest = small_bundle(bundle, wheels={WHEEL: b"the wheel that was verified"}, runner=runner)
    path = tmp_path / "hosts.yaml"
    host = {"name": "b", "address": "local", "vendor": "cpu", "runtime": "bare",
            "workdir": str(tmp_path / "work"),
            "data": {"path": str(tmp_path)}, "weights": "random"}  # fmt: skip
    path.write_text(json.dumps({"hosts": [host], "cases": [{}]}))

    def run() -> list:
        return importer.import_bundle(
            bundle, load_cluster(path), vendors.discover(), Console(file=io.StringIO())
        )

    return bundle, digest, run, tmp_path / "work" / "bundles" / digest


def test_a_bare_host_gets_the_wheels_that_were_verified(bare_import, capsys) -> None:
    bundle, _, run, remote = bare_import
    assert run() == []
    assert "sent 1 files" in capsys.readouterr().out
    assert (remote / mf.wheel_path("b", WHEEL)).read_bytes() == (
        bundle / mf.wheel_path("b", WHEEL)
    ).read_bytes()
    assert (remote / mf.MANIFEST).read_bytes() == (bundle / mf.MANIFEST).read_bytes()


def test_a_wheel_swapped_after_verify_is_refused_and_removed(bare_import, monkeypatch) -> None:
    bundle, _, run, remote = bare_import
    checked = importer.verify.check

    def check_then_swap(*args, **kwargs):
        found = checked(*args, **kwargs)
        swapped = bundle / "swapped"
        swapped.write_bytes(b"the wheel of someone else!!")  # same size, a new file put in its place
        swapped.replace(bundle / mf.wheel_path("b", WHEEL))
        return found

    monkeypatch.setattr(importer.verify, "check", check_then_swap)
    (line,) = run()
    assert line.startswith(
        "error: host b: %s changed after it was verified: sent sha256 " % mf.wheel_path("b", WHEEL)
    )
    assert line.endswith("the copy is removed, nothing used")
    assert not (remote / mf.wheel_path("b", WHEEL)).exists() and not (remote / mf.MANIFEST).exists()


def test_a_copy_changed_on_the_host_is_refused_and_removed(bare_import, monkeypatch) -> None:
    _, _, run, remote = bare_import
    put = LocalTransport.put

    def put_then_change(self, local, dest, *args, **kwargs):
        put(self, local, dest, *args, **kwargs)
        Path(dest).write_bytes(b"changed on the host")

    monkeypatch.setattr(LocalTransport, "put", put_then_change)
    (line,) = run()
    wheel = mf.wheel_path("b", WHEEL)
    said = hashlib.sha256(b"changed on the host").hexdigest()
    assert line.startswith(
        "error: host b: %s: sha256 %s on the host after the copy, the manifest says " % (wheel, said)
    )
    assert not (remote / wheel).exists() and not (remote / mf.MANIFEST).exists()
