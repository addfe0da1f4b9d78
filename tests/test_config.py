"""Cluster file validation: good files load, bad ones fail with one line naming file and field."""

from pathlib import Path

import pytest

from orchestrator.config.load import load_cluster
from orchestrator.model.fields import ConfigError

GOOD = """
hosts:
  - name: a100-1
    address: 198.18.0.2
    user: bench
    vendor: nvidia
    devices: [0, 1]
    data: {path: /data/imagenet/val}
    weights: /data/weights/resnet50-0676ba61.pth
  - name: local
    address: local
    vendor: cpu
    data: {path: sample/val}
    weights: random
cases:
  - toolkit: [tensorrt, pytorch]
    precision: [fp16, fp32]
    batch_size: [64, 256]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return path


def test_good_file_loads_and_resolves_local_paths(tmp_path):
    cluster = load_cluster(write(tmp_path, GOOD))
    remote, local = cluster.hosts
    assert remote.data.path == "/data/imagenet/val"
    assert local.data.path == str(tmp_path / "sample" / "val")
    assert cluster.store == str(tmp_path / "results" / "rn50bench.sqlite")
    assert len(cluster.cases[0].matrix()) == 8


def test_shipped_configs_load():
    repo = Path(__file__).resolve().parent.parent
    for path in sorted((repo / "host_configs").glob("*.yaml")):
        assert load_cluster(path).hosts


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("name: a100-1", "name: 'a100;rm -rf /'", "hosts[0].name"),
        ("name: a100-1", "name: '$(touch /tmp/x)'", "hosts[0].name"),
        ("address: 198.18.0.2", "address: 'host; ls'", "hosts[0].address"),
        ("user: bench", "user: 'bench`id`'", "hosts[0].user"),
        ("path: /data/imagenet/val", "path: '/data/../etc'", "hosts[0].data.path"),
        ("path: /data/imagenet/val", "path: relative/val", "hosts[0].data.path"),
        ("path: /data/imagenet/val", 'path: "/data/val\\nrm"', "hosts[0].data.path"),
        ("devices: [0, 1]", "devices: [0, 0]", "hosts[0].devices"),
        ("precision: [fp16, fp32]", "precision: [fp8]", "cases[0].precision"),
        ("batch_size: [64, 256]", "batch_size: [0]", "cases[0].batch_size"),
        ("vendor: nvidia", "vendor: nvidia\n    colour: blue", "hosts[0].colour"),
        ("user: bench", "user: bench\n    mps: maybe", "hosts[0].mps"),
        ("user: bench", "user: bench\n    mps_pipe_directory: mps", "hosts[0].mps_pipe_directory"),
        ("user: bench", "user: bench\n    mps_pipe_directory: /a/../b", "hosts[0].mps_pipe_directory"),
        ("user: bench", "user: bench\n    mps_pipe_directory: '/a,b'", "hosts[0].mps_pipe_directory"),
        # on a local host too: the daemon's directory is never resolved against the cluster file
        ("vendor: cpu", "vendor: cpu\n    mps_pipe_directory: mps", "hosts[1].mps_pipe_directory"),
    ],
)
def test_bad_values_name_the_field(tmp_path, old, new, field):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_cluster(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert field in message


def test_mps_is_auto_by_default_and_its_pipe_directory_kept_as_written(tmp_path):
    remote, local = load_cluster(write(tmp_path, GOOD)).hosts
    assert (remote.mps, remote.mps_pipe_directory) == ("auto", "/tmp/nvidia-mps")
    text = GOOD.replace("vendor: nvidia", "vendor: nvidia\n    mps: true\n    mps_pipe_directory: /run/mps")
    remote, local = load_cluster(write(tmp_path, text)).hosts
    assert (remote.mps, remote.mps_pipe_directory) == (True, "/run/mps")
    assert (local.mps, local.mps_pipe_directory) == ("auto", "/tmp/nvidia-mps")


def test_duplicate_host_names(tmp_path):
    with pytest.raises(ConfigError, match=r":10: hosts\[1\]\.name: name 'local' is taken by hosts\[0\]"):
        load_cluster(write(tmp_path, GOOD.replace("name: a100-1", "name: local")))


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_cluster(write(tmp_path, "hosts: [\n"))
    with pytest.raises(ConfigError, match="cannot read cluster file"):
        load_cluster(tmp_path / "absent.yaml")
