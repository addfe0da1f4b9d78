"""bench/gpu_product.py's rows: a d row is the same row on the docker twin (host_configs/gpu_docker.yaml)."""

import argparse
from pathlib import Path

from bench import gpu_product

REPO = Path(__file__).resolve().parent.parent


def _args(cpu: bool = False) -> argparse.Namespace:
    return argparse.Namespace(data="/data/val", images=50000, real="/real", labels="/real/val.txt", cpu=cpu)


def test_d_rows_are_their_rows_on_the_docker_twin(tmp_path: Path) -> None:
    bare = gpu_product.row_cluster("x1r3", _args(), tmp_path)
    docker = gpu_product.row_cluster("dx1r3", _args(), tmp_path)
    assert gpu_product.split_row("dx1r3") == ("dx1", 3)
    assert bare["hosts"][0]["runtime"] == "bare" and docker["hosts"][0]["runtime"] == "docker"
    assert bare["cases"] == docker["cases"] == [dict(bare["cases"][0], repeat=1, runs=3)]
    assert docker["hosts"][0]["image"]["sdk_dir"] == str(REPO / ".cache" / "sdk" / "h100")
    assert docker["hosts"][0]["data"] == bare["hosts"][0]["data"]
    real = gpu_product.row_cluster("dreal", _args(), tmp_path)["hosts"][0]
    assert real["data"] == {"path": "/real", "layout": "flat", "labels": "/real/val.txt"}
    cpu = gpu_product.row_cluster("dx1", _args(cpu=True), tmp_path)["hosts"][0]
    assert (cpu["vendor"], cpu["runtime"], "docker" in cpu) == ("cpu", "docker", False)


def test_the_lite_rows_run_efficientnet_lite0_with_its_weights_on_the_real_images(tmp_path: Path) -> None:
    for row in ("lite", "dlite"):
        cluster = gpu_product.row_cluster(row, _args(), tmp_path)
        host, (case,) = cluster["hosts"][0], cluster["cases"]
        assert (case["case"], host["weights"], case["repeat"]) == ("efficientnet_lite0", "package", 1)
        assert host["data"]["path"] == "/real"


def test_the_process_rows_set_the_decoding_processes_and_their_passes(tmp_path: Path) -> None:
    for row, repeat in (("x1p12", 1), ("x5p12", 5)):
        cluster = gpu_product.row_cluster(row, _args(), tmp_path)
        assert cluster["hosts"][0]["decode_processes"] == 12 and cluster["cases"][0]["repeat"] == repeat
