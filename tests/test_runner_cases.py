"""Cases: discovery, the weights contract (sha256 prefix in the name), seeded random init, the gate."""

import hashlib

import pytest
import torch

from runner_in_container.cases import Weights, WeightsError, discover, sha256_of
from runner_in_container.cases.resnet50 import TARGET_TOP1_PCT
from runner_in_container.data.preprocess import Preprocessing


@pytest.fixture(scope="module")
def cases():
    return discover()


def test_cases_found_by_scanning(cases):
    assert sorted(cases) == ["efficientnet_lite0", "resnet50"]
    assert cases["resnet50"].preprocessing == Preprocessing()
    lite = cases["efficientnet_lite0"].preprocessing
    assert (lite.resize, lite.crop, lite.mean, lite.std) == (256, 224, (0.5,) * 3, (0.5,) * 3)


def test_resnet50_target_is_99_percent_of_76_13_for_every_precision(cases):
    assert TARGET_TOP1_PCT == pytest.approx(75.3687)
    assert cases["resnet50"].targets == {p: TARGET_TOP1_PCT for p in ("fp32", "tf32", "fp16", "bf16", "int8")}
    assert cases["efficientnet_lite0"].targets == {}


def test_random_init_is_seeded_and_reproducible(cases):
    case = cases["efficientnet_lite0"]
    weights = case.resolve_weights("random")
    assert (weights.spec, weights.seed, weights.verified, weights.path) == ("random", 0, False, None)
    a, b = case.build(weights).state_dict(), case.build(weights).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert case.meaningful_accuracy(weights)[0] is False


def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def test_weights_name_prefix_verified_or_refused(cases, tmp_path):
    case = cases["resnet50"]
    data = b"not really weights"
    digest = hashlib.sha256(data).hexdigest()
    good = case.resolve_weights(_write(tmp_path / (f"resnet50-{digest[:8]}.pth"), data))
    assert good.verified and good.sha256 == digest and good.name_sha256_prefix == digest[:8]
    assert good.reference is None  # verified, but not the weights the target belongs to
    bad = _write(tmp_path / "resnet50-0676ba61.pth", data)
    with pytest.raises(WeightsError) as info:
        case.resolve_weights(bad)
    assert (
        str(info.value) == f"{bad}: sha256 {digest} does not start with 0676ba61, the prefix in the file name"
    )
    plain = case.resolve_weights(_write(tmp_path / "my_weights.pth", data))
    assert not plain.verified and plain.name_sha256_prefix is None
    meaningful, why = case.meaningful_accuracy(plain)
    assert not meaningful and "unverified" in why
    with pytest.raises(WeightsError, match="no such file"):
        case.resolve_weights(str(tmp_path / "missing.pth"))


def test_package_weights_of_efficientnet_are_its_reference(cases):
    weights = cases["efficientnet_lite0"].resolve_weights("package")
    assert weights.spec == "package" and weights.verified and weights.sha256.startswith("57934424")
    assert weights.reference and sha256_of(weights.path) == weights.sha256


def test_state_dict_round_trip_through_a_file(cases, tmp_path):
    case = cases["efficientnet_lite0"]
    model = case.build(case.resolve_weights("random"))
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), str(path))
    loaded = case.build(case.resolve_weights(str(path)))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert not loaded.training


def _reference(sha_prefix="0676ba61"):
    return Weights(
        "file", "/w/resnet50-0676ba61.pth", sha_prefix + "0" * 56, sha_prefix, True, "IMAGENET1K_V1", None
    )


def test_accuracy_gate(cases):
    case = cases["resnet50"]
    ref = _reference()
    passed = case.accuracy_gate(ref, "fp16", 50000, 75.40)
    assert passed["passed"] is True and passed["target_top1_pct"] == TARGET_TOP1_PCT
    failed = case.accuracy_gate(ref, "int8", 50000, 75.30)
    assert failed["passed"] is False and "<" in failed["reason"]
    subset = case.accuracy_gate(ref, "fp32", 630, 90.0)
    assert subset["passed"] is None and "full 50000-image set" in subset["reason"]
    other = case.accuracy_gate(ref._replace(reference=None), "fp32", 50000, 80.0)
    assert other["passed"] is None and "reference weights" in other["reason"]
    rand = case.accuracy_gate(case.resolve_weights("random"), "fp32", 50000, 0.1)
    assert rand["passed"] is None and "random" in rand["reason"]
    none = cases["efficientnet_lite0"].accuracy_gate(ref, "fp32", 50000, 80.0)
    assert none == {
        "target_top1_pct": None,
        "passed": None,
        "reason": "case efficientnet_lite0 declares no accuracy target for fp32",
    }
