"""Engine cache keys and the build-once cache (runner_in_container/toolkits/engine_cache.py)."""

import os

import pytest

from runner_in_container.toolkits.engine_cache import cached_build, engine_key, write_bytes_atomic

BASE = {
    "onnx_sha256": "ab" * 32,
    "sdk": "tensorrt",
    "sdk_version": "8.5.1.7",
    "device": "NVIDIA A100-SXM4-40GB sm_80",
    "precision": "fp16",
    "batch_size": 256,
}


def test_key_is_stable():
    # A literal: a change of the key's layout must be a deliberate one (it orphans every cached engine).
    assert engine_key(**BASE) == "210315972e30061479b35a481ea711b2054d754ce64e442db425eb3451a93101"
    assert engine_key(**BASE) == engine_key(**dict(reversed(list(BASE.items()))))


@pytest.mark.parametrize(
    "field, value",
    [
        ("onnx_sha256", "cd" * 32),
        ("sdk", "ixrt"),
        ("sdk_version", "10.3.0"),
        ("device", "NVIDIA H200 sm_90"),
        ("device", "NVIDIA A100-SXM4-40GB sm_86"),
        ("precision", "int8"),
        ("batch_size", 128),
    ],
)
def test_key_changes_with_every_field(field, value):
    assert engine_key(**dict(BASE, **{field: value})) != engine_key(**BASE)


def test_key_extra_settings_count():
    plain = engine_key(**BASE)
    assert engine_key(extra={}, **BASE) == plain
    assert engine_key(extra={"layout": "nhwc"}, **BASE) != plain
    assert engine_key(extra={"layout": "nhwc"}, **BASE) != engine_key(extra={"layout": "nchw"}, **BASE)


def test_cached_build_builds_once(tmp_path):
    calls = []

    def build(path):
        calls.append(path)
        with open(path, "wb") as handle:
            handle.write(b"engine bytes")

    path, hit = cached_build(str(tmp_path / "cache"), "k" * 64, ".engine", build)
    assert (hit, os.path.basename(path)) == (False, "k" * 64 + ".engine")
    assert open(path, "rb").read() == b"engine bytes"
    again, hit = cached_build(str(tmp_path / "cache"), "k" * 64, ".engine", build)
    assert (again, hit, len(calls)) == (path, True, 1)
    assert os.listdir(str(tmp_path / "cache")) == ["k" * 64 + ".engine"]


def test_failed_build_leaves_nothing(tmp_path):
    def build(path):
        with open(path, "wb") as handle:
            handle.write(b"half an engine")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="builder crashed"):
        cached_build(str(tmp_path), "a" * 64, ".engine", build)
    assert os.listdir(str(tmp_path)) == []


def test_build_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="wrote nothing"):
        cached_build(str(tmp_path), "b" * 64, ".engine", lambda path: None)
    assert os.listdir(str(tmp_path)) == []


def test_write_bytes_atomic(tmp_path):
    target = str(tmp_path / "table.calib")
    write_bytes_atomic(target, b"calibration")
    write_bytes_atomic(target, b"calibration v2")
    assert open(target, "rb").read() == b"calibration v2"
    assert os.listdir(str(tmp_path)) == ["table.calib"]
