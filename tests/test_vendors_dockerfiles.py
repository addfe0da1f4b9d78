"""Vendor Dockerfile templates: rendered per the contract of dockerfiles/README.md, checked structurally.

The vendor base images cannot be pulled here, so the images are not built; the rendered files are
parsed into instructions, and the docker engine (where reachable) parses them too.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import jinja2
import pytest

import vendors

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "dockerfiles"
KNOWN_INSTRUCTIONS = {"FROM", "RUN", "COPY", "ENV", "ARG", "WORKDIR", "LABEL", "USER"}
WITH_TEMPLATE = sorted(n for n, v in vendors.discover().items() if (TEMPLATES / v.template).is_file())
OWNED = ("iluvatar", "kunlunxin", "nvidia", "zixiao")


def render(name: str, **overrides: str) -> str:
    """Render like orchestrator.host.images: image_vars, then host overrides, then sdk_files."""
    vendor = vendors.get(name)
    variables: Dict[str, object] = dict(vendor.image_vars)
    variables.update(overrides)
    variables["sdk_files"] = [sdk.name for sdk in vendor.sdk_files]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(vendor.template).render(**variables)


def parse_dockerfile(text: str) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    out: List[Tuple[str, str]] = []
    pending: Optional[str] = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending is None):
            continue  # docker drops comment lines, also inside a continued instruction
        if not line:
            continue
        joined = line if pending is None else pending + " " + line
        if joined.endswith("\\"):
            pending = joined[:-1].rstrip()
            continue
        word, _, rest = joined.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = None
    if pending is not None:
        raise ValueError(f"Dockerfile ends inside a continued instruction: {pending!r}")
    return out


def test_parser_joins_continuations_and_drops_comments():
    text = "# c\nFROM x:1\n\nRUN a \\\n# inner comment\n    && b \\\n    && c\nenv A=1 \\\n    B=2\n"
    assert parse_dockerfile(text) == [("FROM", "x:1"), ("RUN", "a && b && c"), ("ENV", "A=1 B=2")]
    with pytest.raises(ValueError, match="continued"):
        parse_dockerfile("FROM x\nRUN a \\\n")


def test_every_vendor_i_own_has_its_template():
    assert set(OWNED) <= set(WITH_TEMPLATE)


@pytest.fixture(params=WITH_TEMPLATE)
def name(request) -> str:
    return request.param


def test_from_is_first_and_takes_the_base_image_variable(name):
    vendor = vendors.get(name)
    assert parse_dockerfile(render(name))[0] == ("FROM", vendor.image_vars["base_image"])
    assert parse_dockerfile(render(name, base_image="registry.lab/base:7"))[0] == (
        "FROM",
        "registry.lab/base:7",
    )


def test_only_known_instructions(name):
    assert {word for word, _ in parse_dockerfile(render(name))} <= KNOWN_INSTRUCTIONS


def test_every_pinned_version_is_in_the_image(name):
    text = render(name)
    for key, value in vendors.get(name).image_vars.items():
        assert value in text, f"{key}={value} missing from {vendors.get(name).template}"


def test_no_url_no_privileged_no_secret(name):
    text = render(name)
    lowered = text.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "privileged" not in lowered
    assert not any(word in lowered for word in ("password", "token", "secret"))


def test_pip_index_only_when_the_lab_sets_one(name):
    url = "https://pypi.lab/simple"
    assert "PIP_INDEX_URL" not in render(name) and "--index-url" not in render(name)
    instructions = parse_dockerfile(render(name, pip_index_url=url))
    runs = [args for word, args in instructions if word == "RUN"]
    if not any("pip" in run and "install" in run for run in runs):
        return  # an image that installs nothing with pip needs no index
    envs = [token for word, args in instructions if word == "ENV" for token in shlex.split(args)]
    # pip either reads the lab's index, or installs from files in the context with --no-index
    assert envs.count("PIP_INDEX_URL=" + url) == 1 or all(
        f"--index-url {url}" in r or "--no-index" in r for r in runs if re.search(r"\bpip3? install\b", r)
    )


def test_runner_is_copied_and_importable_from_the_python_path(name):
    instructions = parse_dockerfile(render(name))
    copies = [args.split() for word, args in instructions if word == "COPY"]
    assert [["runner_in_container", "/opt/rn50bench/runner_in_container"]] == [
        [src.rstrip("/"), dest.rstrip("/")]
        for src, dest in copies
        if src.rstrip("/") == "runner_in_container"
    ]
    envs = [token for word, args in instructions if word == "ENV" for token in shlex.split(args)]
    paths = [token.split("=", 1)[1] for token in envs if token.startswith("PYTHONPATH=")]
    assert paths and paths[-1].split("$")[0].split(":")[0] == "/opt/rn50bench"


def test_sdk_files_are_copied_from_the_context_and_installed(name):
    instructions = parse_dockerfile(render(name))
    runs = " ".join(args for word, args in instructions if word == "RUN")
    copies = [args for word, args in instructions if word == "COPY"]
    for sdk in vendors.get(name).sdk_files:
        assert f"sdk/{sdk.name} /opt/rn50bench-sdk/" in copies
        assert sdk.name in runs
    assert not [
        c
        for c in copies
        if c.startswith("sdk/") and c.split()[0][4:] not in {s.name for s in vendors.get(name).sdk_files}
    ]


def _pins_check(text: str) -> Tuple[str, str]:
    """(RN50BENCH_PINS, python code of the pin check) from a rendered Dockerfile."""
    instructions = parse_dockerfile(text)
    envs = [
        dict(kv.split("=", 1) for kv in shlex.split(args)) for word, args in instructions if word == "ENV"
    ]
    pins = [e["RN50BENCH_PINS"] for e in envs if "RN50BENCH_PINS" in e]
    checks = [shlex.split(args) for word, args in instructions if word == "RUN" and "RN50BENCH_PINS" in args]
    assert len(pins) == 1 and len(checks) == 1
    assert checks[0][:2] == ["python3", "-c"]
    return pins[0], checks[0][2]


@pytest.mark.parametrize("name", OWNED)
def test_pins_name_the_vendor_stack(name):
    pins, _ = _pins_check(render(name))
    expected = {
        "nvidia": "torch==1.13.0a0+936e930 tensorrt==8.5.1.7 torch_tensorrt==1.3.0 onnxruntime_gpu==1.14.1 "
        "mlcommons_loadgen==6.0.14",
        "iluvatar": "torch==1.13.1+corex.3.2.0 torchvision==0.14.1+corex.3.2.0 ixrt==0.4.0+corex.3.2.0 "
        "numpy==1.23.5 pillow==9.3.0",
        "kunlunxin": "torch==1.13.0+cpu torchvision==0.14.0+cpu onnx==1.14.0 numpy==1.23.5 pillow==9.3.0",
        "zixiao": "torch==1.13.0+cpu torchvision==0.14.0+cpu TopsInference==2.4.12 onnx==1.14.0 "
        "numpy==1.23.5 pillow==9.3.0",
    }[name]
    assert pins == expected


def test_the_pin_check_passes_on_installed_versions_and_names_the_ones_that_differ():
    """Run the check the images run, with this interpreter and its installed packages."""
    _, code = _pins_check(render("nvidia"))
    from importlib import metadata

    jinja_version = metadata.version("jinja2")
    ok = _run_check(
        code, "Jinja2=={} PyYAML=={}".format(jinja_version.split(".")[0], metadata.version("pyyaml"))
    )
    assert ok.returncode == 0, ok.stderr
    assert "pins ok" in ok.stdout
    bad = _run_check(code, "jinja2==0.0.1 not-installed-dist==1.0")
    assert bad.returncode != 0
    assert f"jinja2==0.0.1 (installed: {jinja_version})" in bad.stderr
    assert "not-installed-dist==1.0 (installed: None)" in bad.stderr


def _run_check(code: str, pins: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RN50BENCH_PINS=pins)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.docker
@pytest.mark.parametrize("name", OWNED)
def test_docker_engine_parses_the_rendered_dockerfile(name, tmp_path):
    """The classic builder parses the whole file before pulling FROM: no parse error may come back."""
    if (
        not shutil.which("docker")
        or subprocess.run(["docker", "version"], capture_output=True).returncode != 0
    ):
        pytest.skip("no docker engine reachable")
    missing = f"rn50bench-test-missing/base:{time.monotonic_ns()}"
    (tmp_path / "Dockerfile").write_text(render(name, base_image=missing))
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    proc = subprocess.run(
        ["docker", "build", "--pull=false", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0  # the base image does not exist
    assert "parse error" not in output.lower(), output
    steps = len(parse_dockerfile(render(name)))
    assert f"Step 1/{steps} : FROM {missing}" in output, output
