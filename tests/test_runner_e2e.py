"""``python -m runner_in_container`` end to end on the CPU: generated images, real decoding, real models
(random or saved weights), pytorch and onnxruntime; the result checked against docs/result_schema.md."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

from orchestrator.job import collect
from runner_in_container import protocol
from runner_in_container.cases import discover, sha256_of
from runner_in_container.data.generate import generate
from tests.test_runner_schema import check_result

REPO = Path(__file__).resolve().parent.parent


def run_runner(args: List[str]) -> Tuple[int, List[Dict], str]:
    """(exit status, events on stdout, stderr) of one runner process."""
    proc = subprocess.run(
        [sys.executable, "-m", "runner_in_container", *args],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=900,
    )
    events = [e for e in map(protocol.parse_event, proc.stdout.splitlines()) if e is not None]
    return proc.returncode, events, proc.stderr


def read_result(out: Path) -> Dict:
    assert sorted(os.listdir(out)) == ["result.json"]  # written atomically: no temp file left behind
    return json.loads((out / "result.json").read_text())


def save_random_weights(case_name: str, folder: Path, stem: str, prefix: str = "") -> Path:
    """The case's seeded random init saved as ``<stem>-<prefix>.pth``; its own sha256 prefix by default."""
    case = discover()[case_name]
    model = case.build(case.resolve_weights("random"))
    tmp = folder / "weights.tmp"
    torch.save(model.state_dict(), str(tmp))
    path = folder / (f"{stem}-{prefix or sha256_of(str(tmp))[:8]}.pth")
    tmp.rename(path)
    return path


@pytest.fixture(scope="module")
def imageset(tmp_path_factory) -> str:
    """7 generated images in the imagefolder layout (classes 0..6)."""
    return generate(
        str(tmp_path_factory.mktemp("imageset") / "set"), 7, layout="imagefolder", size=(160, 120)
    )


def common(data: str, out: Path, case: str, weights: str) -> List[str]:
    return [
        "--case",
        case,
        "--data",
        data,
        "--weights",
        weights,
        "--device",
        "cpu",
        "--workers",
        "2",
        "--batch-size",
        "2",
        "--repeat",
        "2",
        "--warmup",
        "1",
        "--out",
        str(out),
    ]


def check_events(events: List[Dict], n_images: int, repeat: int, status: str) -> None:
    assert events[0]["ev"] == "start" and events[-1] == dict(events[-1], ev="result", status=status)
    steps = [(e["stage"], e["step"]) for e in events if e["ev"] == "stage"]
    for stage in ("val", "infer"):
        assert [s for s in steps if s[0] == stage] == [
            (stage, "compile"),
            (stage, "warmup"),
            (stage, "passes"),
            (stage, "core"),
        ]
        progress = [e for e in events if e["ev"] == "progress" and e["stage"] == stage]
        # one event at the end of every pass (more every ~2 s)
        ends = [(e["pass_index"], e["images_done"]) for e in progress if e["images_done"] % n_images == 0]
        assert ends == [(i, (i + 1) * n_images) for i in range(repeat)]
        assert progress[-1]["images_done"] == progress[-1]["images_total"] == repeat * n_images
        assert [e for e in events if e["ev"] == "metric" and e["stage"] == stage]
    times = [e["t"] for e in events]
    assert times == sorted(times)


def check_stage(stage: Dict, toolkit: str, n_images: int, repeat: int, batch_size: int) -> None:
    per_pass = -(-n_images // batch_size)
    assert stage["toolkit"] == toolkit
    assert stage["images"] == repeat * n_images and stage["n_images"] == n_images
    assert stage["batches"] == repeat * per_pass
    assert stage["padded_slots"] == repeat * (per_pass * batch_size - n_images)
    assert 0 <= stage["top5_count"] <= n_images and stage["top1_count"] <= stage["top5_count"]
    assert stage["top1_pct"] == round(100.0 * stage["top1_count"] / n_images, 2)
    assert stage["deterministic_across_passes"] is True
    assert len(stage["pass_whole_s"]) == repeat
    assert stage["whole_s"] == pytest.approx(sum(stage["pass_whole_s"]), abs=1e-5)  # each rounded to 1 us
    assert 0 < stage["core_in_pipeline_s"] < stage["whole_s"] and stage["core_s"] > 0
    # the core pass makes one pass's calls (metrics.md version 3): the ratio is of the mean call's time
    mean_ratio = (stage["core_in_pipeline_s"] / repeat) / stage["core_s"]
    assert stage["core_ratio"] == pytest.approx(mean_ratio, rel=1e-3)
    images = stage["images"]  # the seconds in the result are rounded to 1 us
    assert stage["throughput_whole_img_per_s"] == pytest.approx(images / stage["whole_s"], rel=1e-4)
    assert stage["throughput_core_img_per_s"] == pytest.approx(n_images / stage["core_s"], rel=1e-4)
    assert stage["throughput_core_in_pipeline_img_per_s"] == pytest.approx(
        images / stage["core_in_pipeline_s"], rel=1e-4
    )
    core = stage["core_pass"]  # one pass's calls, over the first pass's batches
    assert core["batches"] == per_pass and core["images"] == n_images
    assert core["held_batches"] == min(per_pass, 8)
    assert core["held_gib"] > 0 and core["wall_s"] >= stage["core_s"] - 1e-5
    for key in ("latency_ms", "latency_in_pipeline_ms"):
        lat = stage[key]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


@pytest.mark.slow
def test_resnet50_pytorch_random_weights_subset_with_mfu(imageset, tmp_path):
    out = tmp_path / "out"
    args = common(imageset, out, "resnet50", "random") + [
        "--toolkit",
        "pytorch",
        "--max-images",
        "5",
        "--peak-flops",
        "1e12",
        "--peak-source",
        "test figure",
    ]
    rc, events, stderr = run_runner(args)
    assert rc == 0, stderr
    doc = read_result(out)
    assert check_result(doc) == []
    assert doc["status"] == "ok" and doc["error"] is None
    check_events(events, 5, 2, "ok")
    for name in ("val", "infer"):
        check_stage(doc["stages"][name], "pytorch", 5, 2, 2)
    # the same eager fp32 model twice on the same images: the same classes
    assert doc["agreement_top1"] == 1.0
    assert doc["data"]["n_images"] == 5 and doc["data"]["max_images"] == 5
    assert any("subset" in w for w in doc["warnings"])
    assert doc["weights"]["spec"] == "random" and doc["weights"]["accuracy_meaningful"] is False
    assert doc["accuracy_gate"]["passed"] is None and "random" in doc["accuracy_gate"]["reason"]
    assert 8.17e9 < doc["flops_per_image"] < 8.19e9
    core = doc["stages"]["infer"]["throughput_core_img_per_s"]
    assert doc["mfu"]["mfu"] == pytest.approx(doc["flops_per_image"] * core / 1e12, rel=1e-9)
    assert doc["mfu"]["mfu_flagperf_convention"] == pytest.approx(4.12e9 * core / 1e12, rel=1e-9)
    assert doc["mfu"]["peak_source"] == "test figure"
    durations = doc["durations"]
    assert durations["e2e_time_s"] > doc["stages"]["val"]["whole_s"] + doc["stages"]["infer"]["whole_s"]
    assert durations["warmup_s"] == doc["stages"]["infer"]["warmup_s"] > 0
    # the pipeline started before the passes, outside every window (test_data_loader: started once)
    assert durations["loader_start_s"] > 0 and doc["stages"]["infer"]["pipeline_wait_s"] >= 0
    assert doc["metric_version"] == 3
    figures = collect.read(doc).figures  # what the orchestrator reads from it
    assert figures.metric_version == 3 and figures.loader_start_s == durations["loader_start_s"]
    assert doc["memory"]["mem_used_gib"] > 0 and doc["memory"]["mem_total_gib"] > 0


@pytest.mark.slow
def test_onnxruntime_with_verified_weights_file(imageset, tmp_path):
    weights = save_random_weights("efficientnet_lite0", tmp_path, "efficientnet_lite0")
    out = tmp_path / "out"
    rc, events, stderr = run_runner(
        common(imageset, out, "efficientnet_lite0", str(weights))
        + [
            "--toolkit",
            "onnxruntime",
            "--layout",
            "imagefolder",
        ]
    )
    assert rc == 0, stderr
    doc = read_result(out)
    assert check_result(doc) == []
    check_events(events, 7, 2, "ok")
    check_stage(doc["stages"]["val"], "pytorch", 7, 2, 2)
    check_stage(doc["stages"]["infer"], "onnxruntime", 7, 2, 2)
    infer = doc["stages"]["infer"]
    assert infer["export_s"] > 0 and any("CPUExecutionProvider" in note for note in infer["toolkit_notes"])
    assert doc["durations"]["export_s"] == infer["export_s"]
    assert "onnxruntime" in doc["environment"]["toolkits"]
    w = doc["weights"]
    assert w["verified"] is True and w["spec"] == "file" and w["path"] == str(weights)
    assert w["sha256"] == sha256_of(str(weights)) and w["sha256"].startswith(w["name_sha256_prefix"])
    assert w["accuracy_meaningful"] is True and w["reference"] is None
    assert doc["accuracy_gate"]["target_top1_pct"] is None and doc["accuracy_gate"]["passed"] is None
    assert 0.0 <= doc["agreement_top1"] <= 1.0
    assert doc["data"]["labels_source"] and doc["data"]["decoder"].startswith("PIL ")


def test_wrong_sha256_prefix_is_bad_input_naming_the_file(imageset, tmp_path):
    weights = save_random_weights("efficientnet_lite0", tmp_path, "efficientnet_lite0", prefix="deadbeef")
    out = tmp_path / "out"
    rc, events, stderr = run_runner(common(imageset, out, "efficientnet_lite0", str(weights)))
    actual = sha256_of(str(weights))
    # hashing the weights is set-up, after the start event: bad input there still ends in one line, exit 2
    assert rc == 2 and [e["ev"] for e in events if e["ev"] != "stage"] == ["start"]
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: --weights: {weights}: ")
    assert actual in stderr and "deadbeef" in stderr
    assert not out.exists()


@pytest.mark.slow
def test_failure_mid_run_writes_a_failed_result(tmp_path):
    data = Path(generate(str(tmp_path / "set"), 5, layout="imagefolder", size=(160, 120)))
    last = sorted(data.glob("*/*.JPEG"))[-1]
    last.write_bytes(b"this is not a JPEG")
    out = tmp_path / "out"
    rc, events, stderr = run_runner(common(str(data), out, "efficientnet_lite0", "random"))
    assert rc == 1
    doc = read_result(out)
    assert check_result(doc) == []
    assert doc["status"] == "failed"
    error = doc["error"]
    assert (error["stage"], error["step"], error["type"]) == ("val", "passes", "DataError")
    assert last.name in error["message"] and "DataError" in error["traceback"]
    assert doc["stages"] == {"val": None, "infer": None}
    assert (
        doc["flops_per_image"] > 0 and doc["durations"]["load_s"] >= 0 and doc["durations"]["e2e_time_s"] > 0
    )
    assert [e["ev"] for e in events][-2:] == ["error", "result"]
    assert events[-2]["stage"] == "val" and events[-1]["status"] == "failed"
    assert "DataError" in stderr
