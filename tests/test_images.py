"""orchestrator.host.images: rendering, content tags, SDK checks, the context tar, and real docker builds."""

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import List, Tuple

import pytest

from bench.sshlab import SshHost
from orchestrator.host import images
from orchestrator.host.images import ImageBuildError, ImageError, ImageSpec, ensure_image, image_spec
from orchestrator.transport import LocalTransport, make_transport
from vendors.cpu import VENDOR as CPU
from vendors.image import SdkFile
from vendors.vendor import Vendor

BASE = {"base_image": "local/debian:bookworm"}


class SdkVendor(Vendor):
    name = "sdktest"
    label = "SDK test"
    template = "cpu.Dockerfile.j2"
    image_vars = dict(BASE)
    sdk_files = (
        SdkFile("toolkit-1.0.run", "toolkit installer"),
        SdkFile("driver.tar.gz", "user-space driver"),
    )


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repo's runner package that image_spec reads instead of the real one."""
    root = tmp_path / "repo"
    shutil.copytree(images.RUNNER, root / "runner_in_container", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(images, "REPO", root)
    monkeypatch.setattr(images, "RUNNER", root / "runner_in_container")
    return root


@pytest.fixture
def sdk_dir(tmp_path: Path) -> Tuple[Path, dict]:
    folder = tmp_path / "sdk"
    folder.mkdir()
    sums = {}
    for name, data in (
        ("toolkit-1.0.run", b"#!/bin/sh\necho toolkit\n"),
        ("driver.tar.gz", b"\x1f\x8b driver"),
    ):
        (folder / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    return folder, sums


# -- rendering ---------------------------------------------------------------------------------------


def test_cpu_template_copies_runner_and_sets_pythonpath() -> None:
    text = images.render_dockerfile(CPU, {}, [])  # no onnxruntime wheel in the SDK folder
    assert "FROM local/debian:bookworm" in text.splitlines()
    assert "COPY runner_in_container/ /opt/rn50bench/runner_in_container/" in text
    assert re.search(r"^ENV PYTHONPATH=/opt/rn50bench\b", text, re.MULTILINE)
    assert "python3-torch" in text and "python3-torchvision" in text
    assert 'RN50BENCH_PINS="torch==1.13 torchvision==0.14 numpy==1.24 onnx==1.12 pillow==9.4"' in text
    assert "onnxruntime" not in text and "PIP_INDEX_URL" not in text  # off unless onnxruntime_version is set


def test_cpu_template_onnxruntime_from_sdk_wheel() -> None:
    wheel = CPU.sdk_files[0].name
    text = images.render_dockerfile(CPU, {}, [wheel])
    assert "COPY sdk/%s /opt/rn50bench-sdk/" % wheel in text
    assert "--no-index" in text and "pillow==9.4 onnxruntime==1.17.3" in text
    assert "ONNXRUNTIME_VERSION" not in text


def test_cpu_template_optional_onnxruntime_and_index() -> None:
    text = images.render_dockerfile(CPU, {"onnxruntime_version": "1.17.3"}, [])
    assert "ENV ONNXRUNTIME_VERSION=1.17.3" in text and '"onnxruntime==${ONNXRUNTIME_VERSION}"' in text
    assert "pillow==9.4 onnxruntime==1.17.3" in text and "PIP_INDEX_URL" not in text
    assert "import numpy, onnx, PIL, torch, torchvision, onnxruntime" in text
    text = images.render_dockerfile(
        CPU, {"onnxruntime_version": "1.17.3", "pip_index_url": "https://mirror.lab/simple"}, []
    )
    assert "ENV PIP_INDEX_URL=https://mirror.lab/simple" in text.splitlines()
    assert text.count("mirror.lab") == 1  # pip reads it from the ENV; no RUN line carries it


def test_overrides_win_over_vendor_vars() -> None:
    text = images.render_dockerfile(CPU, {"base_image": "lab/debian:12"})
    assert "FROM lab/debian:12" in text and "local/debian" not in text


def test_missing_variable_is_named() -> None:
    class Bare(Vendor):
        name = "bare"
        template = "cpu.Dockerfile.j2"

    with pytest.raises(ImageError, match=r"dockerfiles/cpu\.Dockerfile\.j2: 'base_image' is undefined.*bare"):
        images.render_dockerfile(Bare(), {})


def test_missing_template_is_named() -> None:
    class Lost(Vendor):
        name = "lost"
        template = "nowhere.Dockerfile.j2"

    with pytest.raises(ImageError, match=r"dockerfiles/nowhere\.Dockerfile\.j2 .*not found"):
        images.render_dockerfile(Lost(), BASE)


@pytest.mark.parametrize("value", ["local/debian:bookworm\nRUN rm -rf /", "a\rb", "a\x00b"])
def test_multiline_variable_rejected(value: str) -> None:
    with pytest.raises(ImageError, match="image variable base_image of vendor cpu must be one line"):
        images.render_dockerfile(CPU, {"base_image": value})


# -- content tag ---------------------------------------------------------------------------------------


def test_tag_is_stable_and_covers_the_context(repo_copy: Path) -> None:
    first = image_spec(CPU, {}, None, {})
    second = image_spec(CPU, {}, None, {})
    assert re.match(r"^rn50bench/cpu:[0-9a-f]{16}$", first.tag)
    assert first.tag == second.tag and first.files == second.files
    names = [f.name for f in first.files]
    assert names == sorted(names)
    assert "Dockerfile" in names and "runner_in_container/__init__.py" in names
    assert all(n == "Dockerfile" or n.startswith("runner_in_container/") for n in names)
    expected = hashlib.sha256()
    for item in first.files:
        expected.update(f"{item.name}\0{item.sha256}\n".encode())
    assert first.content_hash == expected.hexdigest()[:16]


def test_runner_change_changes_tag(repo_copy: Path) -> None:
    before = image_spec(CPU, {}, None, {}).tag
    target = repo_copy / "runner_in_container" / "protocol.py"
    target.write_text(target.read_text() + "\n# changed\n")
    assert image_spec(CPU, {}, None, {}).tag != before
    (repo_copy / "runner_in_container" / "new_module.py").write_text("X = 1\n")
    assert len({before, image_spec(CPU, {}, None, {}).tag}) == 2


def test_template_variable_changes_tag(repo_copy: Path) -> None:
    plain = image_spec(CPU, {}, None, {}).tag
    assert image_spec(CPU, {"onnxruntime_version": "1.17.3"}, None, {}).tag != plain
    assert image_spec(CPU, {"base_image": "lab/debian:12"}, None, {}).tag != plain


def test_unrelated_files_keep_tag(repo_copy: Path) -> None:
    before = image_spec(CPU, {}, None, {})
    (repo_copy / "README.md").write_text("docs\n")
    (repo_copy / "orchestrator").mkdir()
    (repo_copy / "orchestrator" / "cli.py").write_text("print()\n")
    cache = repo_copy / "runner_in_container" / "__pycache__"
    cache.mkdir()
    (cache / "protocol.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (repo_copy / "runner_in_container" / "stray.pyc").write_bytes(b"\x00bytecode")
    (repo_copy / "runner_in_container" / ".protocol.py.swp").write_bytes(b"editor")
    after = image_spec(CPU, {}, None, {})
    assert after.tag == before.tag and after.files == before.files


def test_real_runner_context_has_no_bytecode() -> None:
    spec = image_spec(CPU, {}, None, {})
    assert not [f.name for f in spec.files if f.name.endswith(".pyc") or "__pycache__" in f.name]
    on_disk = [
        p for p in images.RUNNER.rglob("*.py") if "__pycache__" not in p.parts and not p.name.startswith(".")
    ]
    assert {f.name for f in spec.files} >= {p.relative_to(images.REPO).as_posix() for p in on_disk}


# -- SDK files ------------------------------------------------------------------------------------------


def test_sdk_files_enter_context_and_tag(repo_copy: Path, sdk_dir: Tuple[Path, dict]) -> None:
    folder, sums = sdk_dir
    spec = image_spec(SdkVendor(), {}, folder, sums)
    by_name = {f.name: f for f in spec.files}
    assert by_name["sdk/toolkit-1.0.run"].sha256 == sums["toolkit-1.0.run"]
    assert by_name["sdk/driver.tar.gz"].path == folder / "driver.tar.gz"
    assert spec.tag.startswith("rn50bench/sdktest:")
    (folder / "driver.tar.gz").write_bytes(b"another driver build")
    sums2 = dict(sums, **{"driver.tar.gz": hashlib.sha256(b"another driver build").hexdigest()})
    assert image_spec(SdkVendor(), {}, folder, sums2).tag != spec.tag


def test_sdk_checksum_mismatch_names_file(sdk_dir: Tuple[Path, dict]) -> None:
    folder, sums = sdk_dir
    (folder / "toolkit-1.0.run").write_bytes(b"tampered")
    with pytest.raises(ImageError) as err:
        image_spec(SdkVendor(), {}, folder, sums)
    message = str(err.value)
    assert str(folder / "toolkit-1.0.run") in message
    assert hashlib.sha256(b"tampered").hexdigest() in message and sums["toolkit-1.0.run"] in message
    assert "\n" not in message


def test_sdk_missing_file_named(sdk_dir: Tuple[Path, dict]) -> None:
    folder, sums = sdk_dir
    (folder / "driver.tar.gz").unlink()
    with pytest.raises(ImageError, match=re.escape(f"SDK file {folder / 'driver.tar.gz'} not found")):
        image_spec(SdkVendor(), {}, folder, sums)


def test_sdk_needs_dir_and_checksum(sdk_dir: Tuple[Path, dict]) -> None:
    folder, sums = sdk_dir
    with pytest.raises(
        ImageError, match=r"needs SDK files \(toolkit-1.0.run, driver.tar.gz\): set image.sdk_dir"
    ):
        image_spec(SdkVendor(), {}, None, sums)
    with pytest.raises(ImageError, match="SDK file driver.tar.gz of vendor sdktest: state its sha256"):
        image_spec(SdkVendor(), {}, folder, {"toolkit-1.0.run": sums["toolkit-1.0.run"]})
    with pytest.raises(ImageError, match="sdk_checksums names typo.run, which vendor sdktest does not use"):
        image_spec(SdkVendor(), {}, folder, dict(sums, **{"typo.run": "0" * 64}))


def test_vendor_declared_checksum_is_used(sdk_dir: Tuple[Path, dict]) -> None:
    folder, sums = sdk_dir

    class Published(Vendor):
        name = "published"
        template = "cpu.Dockerfile.j2"
        image_vars = dict(BASE)
        sdk_files = (SdkFile("toolkit-1.0.run", "installer", sums["toolkit-1.0.run"]),)

    assert image_spec(Published(), {}, folder, {}).tag.startswith("rn50bench/published:")
    with pytest.raises(ImageError, match="sha256 .*, expected " + "f" * 64):
        image_spec(Published(), {}, folder, {"toolkit-1.0.run": "f" * 64})


# -- context tar and labels -----------------------------------------------------------------------------


def _tar_bytes(spec: ImageSpec) -> bytes:
    buf = io.BytesIO()
    images.write_tar(spec.files, buf)
    return buf.getvalue()


def test_context_tar_is_deterministic(repo_copy: Path, sdk_dir: Tuple[Path, dict]) -> None:
    folder, sums = sdk_dir
    spec = image_spec(SdkVendor(), {}, folder, sums)
    first = _tar_bytes(spec)
    for path in list(repo_copy.rglob("*")) + list(folder.iterdir()):
        path.touch()  # new mtimes change nothing
    again = image_spec(SdkVendor(), {}, folder, sums)
    assert again.tag == spec.tag and _tar_bytes(again) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members) == [f.name for f in spec.files]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
            (0, 0, 0, "", "", 0o644)
        }
        for item in spec.files:
            data = tar.extractfile(item.name).read()
            assert hashlib.sha256(data).hexdigest() == item.sha256
        assert tar.extractfile("Dockerfile").read().decode() == spec.dockerfile


def test_labels_carry_provenance(repo_copy: Path) -> None:
    spec = image_spec(CPU, {}, None, {})
    labels = dict(spec.labels)
    assert labels["rn50bench.content_hash"] == spec.content_hash
    assert labels["rn50bench.vendor"] == "cpu"
    assert labels["rn50bench.created_by"].startswith("rn50bench")
    assert labels["org.opencontainers.image.revision"] == "unknown"  # the copy is not a git repository


def test_git_revision_of_a_repository(repo_copy: Path) -> None:
    git = ["git", "-C", str(repo_copy), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for argv in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(git + argv, check=True, capture_output=True)
    head = subprocess.run(
        git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert images.git_revision() == head
    spec = image_spec(CPU, {}, None, {})
    assert dict(spec.labels)["org.opencontainers.image.revision"] == head


# -- runner for hosts without docker ----------------------------------------------------------------------


def test_install_runner_copies_once(repo_copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "work dir $(x); 'q'" / "runner"
    transport = LocalTransport()
    dest = images.install_runner(transport, str(target))
    assert Path(dest).parent == target and re.match(r"^[0-9a-f]{16}$", Path(dest).name)
    source = repo_copy / "runner_in_container" / "protocol.py"
    assert (Path(dest) / "runner_in_container" / "protocol.py").read_bytes() == source.read_bytes()
    (Path(dest) / "sentinel").write_text("kept")
    assert images.install_runner(transport, str(target)) == dest
    assert (Path(dest) / "sentinel").exists()  # the second call copied nothing
    assert sorted(p.name for p in target.iterdir()) == [Path(dest).name]  # no staging or tar left
    source.write_text(source.read_text() + "\n# changed\n")
    changed = images.install_runner(transport, str(target))
    assert changed != dest and (Path(changed) / "runner_in_container" / "protocol.py").read_text().endswith(
        "# changed\n"
    )
    probe = ["python3", "-c", "import runner_in_container.protocol as p; print(p.__file__)"]
    done = subprocess.run(
        probe, env={"PYTHONPATH": changed}, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == str(Path(changed) / "runner_in_container" / "protocol.py")


# -- real docker ---------------------------------------------------------------------------------------


def _inspect(tag: str) -> dict:
    out = subprocess.run(
        ["docker", "image", "inspect", tag], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)[0]


def _build_dirs() -> List[Path]:
    return sorted(Path("/tmp").glob("rn50bench-build.*"))


@pytest.mark.docker
def test_cpu_image_built_with_labels_and_cached(cpu_image: ImageSpec) -> None:
    labels = _inspect(cpu_image.tag)["Config"]["Labels"]
    expected = dict(cpu_image.labels)
    # the revision is that of the commit the image was first built from (the tag ignores commits)
    assert re.match(r"^([0-9a-f]{40}|unknown)$", labels.pop("org.opencontainers.image.revision"))
    del expected["org.opencontainers.image.revision"]
    assert expected.items() <= labels.items()
    info = _inspect(cpu_image.tag)
    assert "PYTHONPATH=/opt/rn50bench" in info["Config"]["Env"]
    lines: List[str] = []
    assert ensure_image(LocalTransport(), cpu_image, 60, lines.append) == images.CACHED
    assert lines == []


@pytest.fixture
def tiny_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A template folder with a fast image (a COPY on the base) and one whose build fails."""
    folder = tmp_path / "dockerfiles"
    folder.mkdir()
    (folder / "tiny.Dockerfile.j2").write_text(
        "FROM {{ base_image }}\n"
        "LABEL test.nonce={{ nonce }}\n"
        "COPY runner_in_container /opt/rn50bench/runner_in_container\n"
        "RUN test -f /opt/rn50bench/runner_in_container/protocol.py && echo runner-copied\n"
    )
    (folder / "broken.Dockerfile.j2").write_text(
        "FROM {{ base_image }}\n"
        "LABEL test.nonce={{ nonce }}\n"
        'RUN echo "step before the failure" && echo "E: no such package: rn50bench-missing" >&2 && exit 3\n'
    )
    monkeypatch.setattr(images, "TEMPLATES", folder)
    return folder


def _tiny_vendor(template: str) -> Vendor:
    class Tiny(Vendor):
        name = "rn50test"
        image_vars = dict(BASE, nonce=uuid.uuid4().hex)

    Tiny.template = template
    return Tiny()


def _rmi(tag: str) -> None:
    subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, check=False)


@pytest.mark.docker
def test_ensure_image_builds_once(base_image: str, tiny_templates: Path) -> None:
    spec = image_spec(_tiny_vendor("tiny.Dockerfile.j2"), {}, None, {})
    before = _build_dirs()
    lines: List[str] = []
    try:
        assert ensure_image(LocalTransport(), spec, 300, lines.append) == images.BUILT
        assert "runner-copied" in lines and any(spec.tag in line for line in lines)
        assert dict(spec.labels).items() <= _inspect(spec.tag)["Config"]["Labels"].items()
        assert _build_dirs() == before  # the temporary context on the host is gone
        assert ensure_image(LocalTransport(), spec, 300, lines.append) == images.CACHED
    finally:
        _rmi(spec.tag)


@pytest.mark.docker
def test_a_tag_on_an_unlabelled_image_is_not_trusted(base_image: str, tiny_templates: Path) -> None:
    """The tag names a content hash; an image without that hash in its label is not the image it names:
    offline refuses it in one line naming the image, online builds over it."""
    spec = image_spec(_tiny_vendor("tiny.Dockerfile.j2"), {}, None, {})
    subprocess.run(["docker", "tag", base_image, spec.tag], check=True)  # the base image has no labels
    base_id = _inspect(base_image)["Id"]
    try:
        with pytest.raises(
            images.ImageMissing, match="is image %s, labelled rn50bench.content_hash=''" % base_id
        ):
            ensure_image(LocalTransport(), spec, 300, lambda line: None, offline=True)
        assert ensure_image(LocalTransport(), spec, 300, lambda line: None) == images.BUILT
        built = _inspect(spec.tag)
        assert (
            built["Id"] != base_id
            and built["Config"]["Labels"][images.CONTENT_HASH_LABEL] == spec.content_hash
        )
    finally:
        _rmi(spec.tag)


@pytest.mark.docker
def test_failed_build_raises_with_reason(base_image: str, tiny_templates: Path) -> None:
    vendor = _tiny_vendor("broken.Dockerfile.j2")
    spec = image_spec(vendor, {}, None, {})
    before = _build_dirs()
    lines: List[str] = []
    with pytest.raises(ImageBuildError) as err:
        ensure_image(LocalTransport(), spec, 300, lines.append)
    message = str(err.value)
    assert message.startswith(f"docker build of {spec.tag} on local exited 3: ")
    assert message.endswith("returned a non-zero code: 3") and "\x1b" not in message
    assert "E: no such package: rn50bench-missing" in lines and "step before the failure" in lines
    assert not [line for line in lines if "\x1b" in line or "\r" in line]
    assert _build_dirs() == before
    assert subprocess.run(["docker", "image", "inspect", spec.tag], capture_output=True).returncode != 0
    nonce = "label=test.nonce=" + vendor.image_vars["nonce"]
    argv = ["docker", "ps", "--all", "--quiet", "--filter", nonce]
    assert (
        subprocess.run(argv, capture_output=True, text=True, check=True).stdout == ""
    )  # no failed step left


@pytest.mark.docker
@pytest.mark.ssh
def test_ensure_image_over_ssh(base_image: str, tiny_templates: Path, ssh_host: SshHost) -> None:
    spec = image_spec(_tiny_vendor("tiny.Dockerfile.j2"), {}, None, {})
    lines: List[str] = []
    try:
        with make_transport(**ssh_host.transport_kwargs()) as transport:
            assert ensure_image(transport, spec, 300, lines.append) == images.BUILT
            assert ensure_image(transport, spec, 300, lines.append) == images.CACHED
        assert "runner-copied" in lines
        assert dict(spec.labels).items() <= _inspect(spec.tag)["Config"]["Labels"].items()
    finally:
        _rmi(spec.tag)
