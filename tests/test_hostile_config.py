"""Hostile values (quotes, ';', '$(...)', backticks, newlines, '..') in every string field of the cluster
file: each is rejected with one line naming the field, or it is a path that only ever travels as one argv
element. An end-to-end run over SSH with such paths proves that no shell interprets them."""

import copy
import json
import os
import posixpath
import re
import shlex
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import vendors
from orchestrator.config.load import load_cluster
from orchestrator.job.plan import expand
from orchestrator.job.stages import RunContext
from orchestrator.launchers.ssh import DirectLauncher
from orchestrator.model.fields import ConfigError
from orchestrator.store import Store
from orchestrator.transport.ssh import quote_argv
from runner_in_container.data.generate import generate
from tests.test_faults import jobs_by_host, only_run, orchestrator, ssh_entry, write_cluster

BASE: Dict[str, Any] = {
    "store": "results/s.sqlite",
    "results_dir": "results",
    "defaults": {"workdir": "/var/tmp/rn50bench"},
    "hosts": [
        {
            "name": "remote",
            "address": "198.18.0.2",
            "user": "bench",
            "key_file": "keys/id",
            "known_hosts": "keys/known_hosts",
            "jump": [{"address": "gate.lab", "user": "bench", "key_file": "keys/gate"}],
            "vendor": "cpu",
            "python": "python3",
            "workdir": "/srv/work",
            "data": {"path": "/srv/val", "labels": "/srv/val.txt", "layout": "imagefolder"},
            "weights": "/srv/resnet50-0676ba61.pth",
            "image": {"base_image": "local/debian:bookworm", "pip_index_url": "https://pypi.lab/simple"},
            "docker": {"shm_size": "8g", "memory": "16g"},
        },
        {
            "name": "here",
            "address": "local",
            "vendor": "cpu",
            "data": {"path": "val"},
            "weights": "w/resnet50-0676ba61.pth",
        },
    ],
    "cases": [
        {
            "case": "resnet50",
            "toolkit": "pytorch",
            "precision": "fp32",
            "hosts": ["remote", "here"],
            "runs": 1,
        }
    ],
}

#: every string field: (where, how it names itself in an error)
FIELDS: List[Tuple[str, str]] = [
    ("store", "store"),
    ("results_dir", "results_dir"),
    ("defaults.workdir", "defaults.workdir"),
    ("hosts.0.name", "hosts[0].name"),
    ("hosts.0.address", "hosts[0].address"),
    ("hosts.0.user", "hosts[0].user"),
    ("hosts.0.key_file", "hosts[0].key_file"),
    ("hosts.0.known_hosts", "hosts[0].known_hosts"),
    ("hosts.0.jump.0.address", "hosts[0].jump[0].address"),
    ("hosts.0.jump.0.user", "hosts[0].jump[0].user"),
    ("hosts.0.jump.0.key_file", "hosts[0].jump[0].key_file"),
    ("hosts.0.vendor", "hosts[0].vendor"),
    ("hosts.0.runtime", "hosts[0].runtime"),
    ("hosts.0.python", "hosts[0].python"),
    ("hosts.0.workdir", "hosts[0].workdir"),
    ("hosts.0.data.path", "hosts[0].data.path"),
    ("hosts.0.data.labels", "hosts[0].data.labels"),
    ("hosts.0.data.layout", "hosts[0].data.layout"),
    ("hosts.0.data.md5", "hosts[0].data.md5"),
    ("hosts.0.weights", "hosts[0].weights"),
    ("hosts.0.mps_pipe_directory", "hosts[0].mps_pipe_directory"),
    ("hosts.0.image.base_image", "hosts[0].image.base_image"),
    ("hosts.0.image.pip_index_url", "hosts[0].image.pip_index_url"),
    ("hosts.0.image.sdk_dir", "hosts[0].image.sdk_dir"),
    ("hosts.0.image.registry", "hosts[0].image.registry"),
    ("hosts.0.image.sdk_checksums.<key>", "hosts[0].image.sdk_checksums"),
    ("hosts.0.image.sdk_checksums.<value>", "hosts[0].image.sdk_checksums"),
    ("hosts.0.docker.shm_size", "hosts[0].docker.shm_size"),
    ("hosts.0.docker.memory", "hosts[0].docker.memory"),
    ("hosts.1.workdir", "hosts[1].workdir"),
    ("hosts.1.data.path", "hosts[1].data.path"),
    ("hosts.1.weights", "hosts[1].weights"),
    ("cases.0.case", "cases[0].case"),
    ("cases.0.toolkit", "cases[0].toolkit"),
    ("cases.0.precision", "cases[0].precision"),
    ("cases.0.hosts.0", "unknown host"),
    ("cases.0.toolkit_options.<key>", "cases[0].toolkit_options"),
    ("cases.0.toolkit_options.<value>", "cases[0].toolkit_options"),
]
HOSTILE = [
    "it's",
    'say "hi"',
    "a;touch /tmp/pwned",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "a\nb",
    "../../etc/passwd",
    "a b && c",
    "-rf",
]
#: paths only Python opens, on the control machine (the store, keys, the SDK folder)
CONTROL_PATHS = {
    "store", "results_dir", "hosts.0.key_file", "hosts.0.known_hosts", "hosts.0.image.sdk_dir",
    "hosts.0.jump.0.key_file",
}  # fmt: skip
#: paths that reach the host's commands, always as (part of) one argv element; a newline, '"' or ','
#: (docker --mount syntax) and, on remote hosts, '..' or a relative path stay refused
HOST_PATHS = {
    "defaults.workdir": ["workdir"], "hosts.0.workdir": ["workdir"], "hosts.0.data.path": ["data", "path"],
    "hosts.0.data.labels": ["data", "labels"], "hosts.0.weights": ["weights"], "hosts.1.workdir": ["workdir"],
    "hosts.1.data.path": ["data", "path"], "hosts.1.weights": ["weights"],
    "hosts.0.mps_pipe_directory": ["mps_pipe_directory"],
}  # fmt: skip


def with_value(field: str, value: str) -> Dict[str, Any]:
    doc = copy.deepcopy(BASE)
    if field == "defaults.workdir":
        del doc["hosts"][0]["workdir"]  # so that the remote host uses it
    if field == "hosts.0.mps_pipe_directory":
        doc["hosts"][0]["mps"] = True  # so that the job command uses it
    *parents, last = field.split(".")
    if last in ("<key>", "<value>"):  # a mapping field: a hostile key, or a hostile value of a good key
        *parents, last = parents
        good_key, good_value = ("onnxruntime.whl", "0" * 64) if "sdk" in last else ("threads", "4")
        value = {value: good_value} if field.endswith("<key>") else {good_key: value}
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def cases():
    for field, name in FIELDS:
        for value in HOSTILE:
            yield field, name, value
            if field in CONTROL_PATHS or field in HOST_PATHS:
                yield field, name, "/srv/" + value


@pytest.mark.parametrize("field, name, value", list(cases()))
def test_every_string_field_refuses_or_carries_hostile_text(tmp_path, field, name, value):
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps(with_value(field, value)))
    try:
        cluster = load_cluster(path)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(str(path)) and name in message
        return
    if field == "cases.0.toolkit_options.<value>":  # one argv element "KEY=VALUE", in a safe alphabet
        assert re.match(r"^[A-Za-z0-9._:+-]*$", value), value
        return
    assert field in CONTROL_PATHS or field in HOST_PATHS, "%s accepted %r" % (field, value)
    if field in HOST_PATHS:
        index = 1 if field.startswith("hosts.1") else 0
        host = cluster.hosts[index]
        loaded = cluster.host_workdir(host) if field.endswith("workdir") else _get(host, HOST_PATHS[field])
        if index == 0:  # remote: as written, absolute, without '..'
            assert loaded == value and ".." not in value.split("/")
        else:  # this machine: relative to the cluster file
            assert loaded == (value if value.startswith("/") else str((tmp_path / value).resolve()))
        assert not any(ch in loaded for ch in '\n",')
        _check_argv(cluster, index, loaded, tmp_path)


def _get(node: Any, path: List[str]) -> str:
    for part in path:
        node = getattr(node, part)
    return node


def _check_argv(cluster, index: int, value: str, tmp_path: Path) -> None:
    """The value reaches the host's commands inside single argv elements that survive SSH quoting intact."""
    known = vendors.discover()
    jobs, _ = expand(cluster, known)
    (job,) = [j for j in jobs if j.host == cluster.hosts[index].name]
    for runtime in ("docker", "bare"):
        host = cluster.hosts[index].model_copy(update={"runtime": runtime})
        ctx = RunContext("r1", cluster, Store(str(tmp_path / "s.sqlite")), known, tmp_path, lambda *a: None)
        worker = DirectLauncher(ctx, host).worker
        worker.image, worker.runner_path = "rn50bench/cpu:0123456789abcdef", "/srv/runner/abc"
        remote_dir = posixpath.join(cluster.host_workdir(host), "runs", "r1", job.job_id)
        argv = worker.job_command(job, remote_dir).argv(job.device)
        assert any(value in arg for arg in argv), argv
        assert shlex.split(quote_argv(argv)) == argv  # what the remote shell hands to exec: the same argv


def test_credentials_in_the_pip_index_are_refused(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text(
        json.dumps(with_value("hosts.0.image.pip_index_url", "https://user:secret@pypi.lab/simple"))
    )
    with pytest.raises(ConfigError, match=r"hosts\[0\].image.pip_index_url: .*must not carry credentials"):
        load_cluster(path)


def test_privileged_needs_the_vendor_and_the_config(tmp_path):
    doc = copy.deepcopy(BASE)
    doc["hosts"][0]["docker"]["privileged"] = True
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps(doc))
    done = orchestrator("plan", "--cluster", str(path), timeout=60)
    assert done.returncode == 2
    assert "hosts[0].docker.privileged: vendor cpu does not need --privileged" in done.stderr


@pytest.mark.parametrize("vendor", ["nvidia", "cpu"])
def test_mps_needs_an_nvidia_host(tmp_path, vendor):
    doc = copy.deepcopy(BASE)
    doc["hosts"][0].update(vendor=vendor, mps=True)
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps(doc))
    done = orchestrator("plan", "--cluster", str(path), timeout=60)
    if vendor == "nvidia":
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2
        assert "hosts[0].mps: vendor cpu has no MPS daemon to join" in done.stderr


def test_the_stored_cluster_holds_paths_not_secrets(tmp_path):
    key = tmp_path / "keys" / "id"
    key.parent.mkdir()
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret material\n")
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps(BASE))
    stored = json.dumps(load_cluster(path).model_dump(mode="json"))
    assert str(key) in stored and "secret material" not in stored and "PRIVATE KEY" not in stored


# -- end to end over SSH ---------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.ssh
@pytest.mark.slow
def test_hostile_paths_run_end_to_end_over_ssh_and_no_shell_sees_them(
    tmp_path, ssh_host, cpu_image, cpu_sdk_dir, base_image
):
    markers = [Path("/tmp/rn50bench-pwned-%s-%d" % (uuid.uuid4().hex[:8], i)) for i in range(4)]
    # quotes balanced: an unbalanced one would make a naive shell refuse the whole line, hiding the rest
    hostile = "q'uote'd $(touch %s) a;touch %s;b `touch %s`" % tuple(markers[:3])
    root = Path(generate(str(tmp_path / hostile / "set"), images=4, layout="imagefolder"))
    # the folder's own name is also the container's --data argument; a relative marker (no '/' in a name)
    # would appear in the remote shell's working directory, the ssh user's home
    relative = "rn50bench-pwned-%s" % uuid.uuid4().hex[:8]
    markers.append(Path(os.path.expanduser("~" + ssh_host.user)) / relative)
    data = root.rename(root.with_name("val $(touch %s)" % relative))
    workdir = tmp_path / ("work;touch %s" % markers[3])
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    image = {"base_image": base_image, "sdk_dir": str(cpu_sdk_dir)}
    entry = ssh_entry(
        "evil", ssh_host, data, workdir, image, strict_host_keys=False, known_hosts=str(empty_known_hosts)
    )
    path = write_cluster(tmp_path / "hosts.yaml", tmp_path, [entry])
    done = orchestrator("run", "--cluster", str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    job = jobs_by_host(tmp_path / "store.sqlite", only_run(tmp_path / "store.sqlite")["run_id"])["evil"]
    assert job["state"] == "OK"
    assert [str(m) for m in markers if m.exists()] == []  # no shell ran the text
    assert (workdir / "runs").is_dir()  # the workdir was used under its exact name
    (found,) = Store(str(tmp_path / "store.sqlite")).results(job["run_id"]).values()
    assert found["result"]["config"]["data"] == "/data/" + data.name  # inside the container too, verbatim
    # the opted-out host key check is said once for the host, however many connections the run made
    assert (
        done.stderr.count("evil (root@%s:%d): strict_host_keys is off" % (ssh_host.address, ssh_host.port))
        == 1
    )
