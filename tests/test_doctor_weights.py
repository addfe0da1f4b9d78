"""Issue 32, item 2: doctor checks the weights by content, whatever the file is called: a file torch.save
wrote (its first bytes), whose sha256 is that of the weights each case run on the host takes (its reference
weights, else weights_sha256 of the case or the host, else the prefix in its name). Real files (a resnet50
state dict from random init), the real sha256sum and od through the local transport."""

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

import vendors
from orchestrator.config.load import load_cluster
from orchestrator.host.checks import Check, Limits, StorageChecks
from orchestrator.transport.local import LocalTransport
from runner_in_container.hashing import sha256_file

WRONG = "0" * 64
EXPECTED = "resnet50-0676ba61.pth (torchvision IMAGENET1K_V1)"


def weights_check(
    tmp_path: Path, weights: Path, host: Dict[str, Any], cases: List[Dict[str, Any]], checksums: bool = True
) -> Check:
    entry = dict(
        {
            "name": "here",
            "address": "local",
            "vendor": "cpu",
            "data": {"path": str(tmp_path)},
            "weights": str(weights),
        }
    )
    entry.update(host)
    path = tmp_path / "cluster.yaml"
    path.write_text(json.dumps({"hosts": [entry], "cases": cases}))
    cluster = load_cluster(path)
    transport = LocalTransport()
    try:
        probe = StorageChecks(
            cluster, cluster.hosts[0], vendors.discover()["cpu"], Limits(checksums=checksums), transport, 30.0
        )
        return probe.weights()
    finally:
        transport.close()


@pytest.fixture
def state_dict(resnet50_random_file, tmp_path) -> Path:
    """The real resnet50 state dict under a name of its own in this test's folder."""
    path = tmp_path / "resnet50.pth"
    path.write_bytes(resnet50_random_file.read_bytes())
    return path


def test_a_state_dict_called_resnet50_is_not_taken_for_the_reference_weights(tmp_path, state_dict):
    check = weights_check(tmp_path, state_dict, {}, [{"case": "resnet50"}])
    assert (check.status, check.summary) == ("fail", "checksum differs")
    assert check.detail == (
        "%s: sha256 %s is not that of %s, the weights case resnet50 takes; for other weights give "
        "weights_sha256" % (state_dict, sha256_file(str(state_dict)), EXPECTED)
    )
    assert "weights_sha256" in check.fix


def test_weights_sha256_of_the_host_or_the_case_names_other_weights(tmp_path, state_dict):
    digest = sha256_file(str(state_dict))
    on_host = weights_check(tmp_path, state_dict, {"weights_sha256": digest}, [{"case": "resnet50"}])
    assert (on_host.status, on_host.summary) == ("pass", "present, sha256 ok")
    case_wins = [{"case": "resnet50", "weights_sha256": digest}]
    assert weights_check(tmp_path, state_dict, {"weights_sha256": WRONG}, case_wins).status == "pass"
    wrong_case = [{"case": "resnet50", "toolkit": "pytorch"}, {"case": "resnet50", "weights_sha256": WRONG,
                                                                "toolkit": "inductor"}]  # fmt: skip
    check = weights_check(tmp_path, state_dict, {"weights_sha256": digest}, wrong_case)
    assert (check.status, check.summary) == ("fail", "checksum differs")
    assert check.detail == "%s: sha256 %s, not %s as weights_sha256 says" % (state_dict, digest, WRONG)


@pytest.mark.parametrize("checksums", [True, False])
def test_a_file_that_is_not_a_state_dict_fails_naming_the_expected_file(tmp_path, checksums):
    corrupt = tmp_path / "resnet50.pth"
    corrupt.write_bytes(b"<html>a proxy's error page, saved as the weights</html>\n")
    host = {"weights_sha256": sha256_file(str(corrupt))}
    check = weights_check(tmp_path, corrupt, host, [{"case": "resnet50"}], checksums)
    assert (check.status, check.summary) == ("fail", "not a state dict")
    assert check.detail == (
        "%s is not a file torch.save writes (it starts with 3c68746d); expected a state dict, e.g. %s"
        % (corrupt, EXPECTED)
    )


def test_without_checksums_a_state_dict_is_only_present(tmp_path, state_dict):
    check = weights_check(tmp_path, state_dict, {}, [{"case": "resnet50"}], checksums=False)
    assert (check.status, check.summary) == ("pass", "present (sha256 not checked)")
