"""Issue 5's bench: one call on the H200, one table, every path on the same generated JPEG set.

Rows (ResNet50, fp16, batch 256, each pass over the whole set, every pass decoding the files again):

  a  reference style: torch DataLoader over PIL (8 worker processes, torchvision transforms), eager fp16,
     ``.cuda()`` and ``torch.cuda.synchronize()`` around every batch (FlagPerf's adapter); core = host
     timer around the forward call between two syncs;
  b  the runner (``python -m runner_in_container``), toolkit pytorch, PIL decoder;
  c  the runner's fastest path: toolkit cudnn_fused, nvJPEG decoder in its default decoding processes;
  d  the same with toolkit inductor (torch.compile) in place of cudnn_fused;
  e  c with one decoding process (``--decode-processes 1``): slower whole, but the model has the GPU to
     itself, so its p_core is the compute figure (in c the decoding processes' GPU work is time-sliced
     with the model's, which the runner warns about, and c's p_core is understated);
  f  c under MPS: the bench starts an MPS control daemon of its own (``nvidia-cuda-mps-control -d``, its
     pipe and log folders under DEST/mps; no setting of the card changes) and quits it after the row; the
     runner finds it, runs its default number of decoding processes for MPS, and their kernels run
     beside the model's instead of taking turns with them. Skipped, and the exit status 1, where there is
     no ``nvidia-cuda-mps-control`` (``--skip f`` leaves it out).

Columns: p_core, p_whole (img/s, metrics.md definitions; b-f from the runner's result.json), e2e (wall
time of the row's process, s), mem (GiB: device used minus the idle baseline or the allocator's reserved
peak, the larger), MFU (FLOPs counted from the model x p_core / the device's dense fp16 peak from vendors/),
and for c the check: top-1 agreement of the compiled fp16 model on nvJPEG input with the eager fp32 model
on PIL input, on the first ``--check-images`` images, plus the pixel difference of the two data paths.

Weights: there are no ResNet50 weights on the H200. Seeded random weights put every image in one class
(BatchNorm in eval mode with its initial statistics), which makes any agreement 100% and meaningless, so
the bench re-estimates the BatchNorm statistics on the set's first images and uses those weights for every
row (``--weights FILE`` takes a real file instead). That model's logits are still close together, so the
check also gives the logit error relative to the logits' spread, which does not depend on ties.

On the H200, from the repo root (about 7 minutes; 9 at most, --budget-s):
    python -m bench.h200_bench --dest "$OUT/bench"
Plumbing check on a CPU (small numbers, pytorch in place of cudnn_fused and inductor, the PIL loader):
    python -m bench.h200_bench --dry-run --device cpu --images 64 --dest /tmp/bench
Writes DEST/bench.json, DEST/bench.md, DEST/runs/<row>/ (result.json, logs); prints the table; exit 0
when every row and the check ran, 1 otherwise (the table says which failed and why).
"""

import argparse
import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

# torch-free: the result reading, MFU and tables the orchestrator uses
from orchestrator.job import collect
from orchestrator.report.load import dig
from orchestrator.report.tables import as_markdown
from runner_in_container import protocol
from runner_in_container.hashing import sha256_file

START = time.time()  # the budget's start; a child's own e2e starts here, before torch is imported
REPO = Path(__file__).resolve().parent.parent

PRECISION_ON = {"cuda": "fp16", "cpu": "fp32"}
REFERENCE_WORKERS = 8
TAIL_LINES = 25
#: seconds each step may take at most (the budget may cut them shorter)
CAPS = {
    "generate": 150,
    "weights": 90,
    "a": 120,
    "b": 200,
    "c": 170,
    "d": 170,
    "e": 120,
    "f": 170,
    "check": 150,
}
ROWS = "abcdef"
MPS_CONTROL = "nvidia-cuda-mps-control"
#: a step that cannot get this many seconds from the budget is skipped
MIN_STEP_S = 25


# ---------------------------------------------------------------------------------------- helpers
def _nproc() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
        return "\n".join(line[:300] + (" ..." if len(line) > 300 else "") for line in lines)
    except OSError:
        return ""


def run_child(
    argv: List[str], log: Path, timeout: float, env: Optional[Dict[str, str]] = None
) -> Tuple[Optional[int], float]:
    """(exit status or None when killed at ``timeout``, wall seconds); output to ``log``."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO), start_new_session=True, env=env
        )
        rc: Optional[int] = None
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:  # timed out or interrupted: end the child and what it started
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
    return rc, time.perf_counter() - start


class Budget:
    """Seconds left of the bench's wall-time budget."""

    def __init__(self, seconds: float) -> None:
        self.deadline = START + seconds

    def timeout(self, step: str) -> Optional[float]:
        left = self.deadline - time.time() - 5
        return min(CAPS[step], left) if left >= MIN_STEP_S else None


def _gib(n: float) -> float:
    return round(n / float(1 << 30), 3)


# ----------------------------------------------------------------------------------- child steps
def _model(weights: str):
    from runner_in_container.cases import discover

    case = discover()["resnet50"]
    return case, case.build(case.resolve_weights(weights))


def child_weights(args: argparse.Namespace) -> Dict[str, Any]:
    """Seeded random ResNet50 with BatchNorm statistics estimated on the set's first images, saved."""
    import torch

    from runner_in_container.data import open_dataset
    from runner_in_container.data.loader import BatchLoader
    from runner_in_container.data.preprocess import normalize

    dev = torch.device(args.device)
    info: Dict[str, Any] = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
    if dev.type == "cuda":
        info["device_memory_gib"] = _gib(torch.cuda.get_device_properties(dev).total_memory)
    if args.weights != "random":
        return dict(info, weights=args.weights, recalibrated=False)
    case, model = _model("random")
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over every batch seen
    model.to(dev).train()
    dataset = open_dataset(args.data, limit=args.images)
    with torch.no_grad():
        for batch in BatchLoader(dataset, args.batch_size, case.preprocessing, workers=_nproc()):
            model(normalize(batch.images[: batch.valid].to(dev), case.preprocessing, torch.float32, False))
    model.eval().cpu()
    saved = Path(args.out).parent / "resnet50-random-bnstats.pth"
    torch.save(model.state_dict(), str(saved))
    path = saved.with_name("resnet50-random-bnstats-%s.pth" % sha256_file(str(saved))[:8])  # torch.hub name
    saved.rename(path)
    return dict(info, weights=str(path), recalibrated=True, recalibration_images=len(dataset.samples))


def _cuda_memory(torch, dev, baseline: int) -> Dict[str, Any]:
    free, total = torch.cuda.mem_get_info(dev)
    reserved = torch.cuda.max_memory_reserved(dev)
    return {"mem_used_gib": _gib(max(total - free - baseline, reserved)), "mem_total_gib": _gib(total)}


def child_reference(args: argparse.Namespace) -> Dict[str, Any]:
    """Row a: a FlagPerf-style loop (DataLoader over PIL in worker processes, sync around every batch)."""
    import torch
    import torchvision
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms

    from runner_in_container.flops import count_flops

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    baseline = 0
    if cuda:
        torch.cuda.init()
        free, total = torch.cuda.mem_get_info(dev)
        baseline = total - free
    case, model = _model(args.weights)
    flops, _ = count_flops(model, case.preprocessing.crop)
    dtype = torch.float16 if args.precision == "fp16" else torch.float32
    model = model.to(dev, dtype).eval()
    pp = case.preprocessing
    transform = transforms.Compose(
        [
            transforms.Resize(pp.resize),
            transforms.CenterCrop(pp.crop),
            transforms.ToTensor(),
            transforms.Normalize(pp.mean, pp.std),
        ]
    )
    try:  # a small set leaves class folders empty (torchvision >= 0.17 can take that)
        dataset = torchvision.datasets.ImageFolder(args.data, transform=transform, allow_empty=True)
    except TypeError:
        dataset = torchvision.datasets.ImageFolder(args.data, transform=transform)
    if args.images < len(dataset):
        dataset = Subset(dataset, range(args.images))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    with torch.no_grad():
        warm = torch.zeros((args.batch_size, 3, pp.crop, pp.crop), dtype=dtype, device=dev)
        for _ in range(args.warmup):
            model(warm)
        sync()
        core, images, predictions = 0.0, 0, []
        start = time.perf_counter()
        for x, _ in loader:
            x = x.to(dev).to(dtype)  # .cuda().half()
            sync()
            t0 = time.perf_counter()
            y = model(x)
            sync()
            core += time.perf_counter() - t0
            predictions.append(y.argmax(1).cpu())
            images += x.shape[0]
        whole = time.perf_counter() - start
    result = {
        "images": images,
        "passes": 1,
        "core_s": core,
        "whole_s": whole,
        "p_core": images / core,
        "p_whole": images / whole,
        "flops_per_image": flops,
        "decoder": "PIL (torch DataLoader, {} worker processes)".format(args.workers),
        "timing": "host timer around the forward call between torch.cuda.synchronize() calls",
        "e2e_own_s": time.time() - START,
    }
    if cuda:
        result.update(_cuda_memory(torch, dev, baseline))
    return result


def toolkit_logits(name: str, precision: str, model, batches, dev, pp, work_dir: str, options=None):
    """Logits [N, 1000] (float32, CPU) of toolkit ``name`` over uint8 ``batches`` [(images, valid)]."""
    import torch

    from runner_in_container import toolkits
    from runner_in_container.data.preprocess import normalize
    from runner_in_container.toolkits.base import ToolkitSettings

    bs = batches[0][0].shape[0]
    toolkit = toolkits.load(name)(ToolkitSettings(dev, precision, bs, work_dir, options=options or {}))
    dtype, channels_last = toolkit.input_dtype(), toolkit.channels_last()
    example = normalize(batches[0][0].to(dev), pp, dtype, channels_last)
    forward = toolkit.compile(copy.deepcopy(model).to(dev).eval(), example)

    def run(inputs):
        out = []
        with torch.no_grad():
            for images, valid in inputs:
                logits = forward(normalize(images.to(dev), pp, dtype, channels_last))
                out.append(logits[:valid].float().cpu())  # copied before the next call reuses the buffer
        return torch.cat(out)

    return run


def _compare(reference, other) -> Dict[str, float]:
    spread = float(reference.std())
    error = (other - reference).abs()
    return {
        "agreement_top1": round(float((reference.argmax(1) == other.argmax(1)).double().mean()), 6),
        "logit_error_mean_rel": float(error.mean()) / spread,
        "logit_error_max_rel": float(error.max()) / spread,
    }


def _pixel_differences(device_batches, pil_batches, dataset) -> Dict[str, Any]:
    per_image, total, above_2, count = [], 0, 0, 0
    for (dev_images, valid), (pil_images, _) in zip(device_batches, pil_batches):
        d = (dev_images[:valid].cpu().int() - pil_images[:valid].int()).abs()
        total += int(d.sum())
        above_2 += int((d > 2).sum())
        count += d.numel()
        per_image += [
            (int(m), float(a)) for m, a in zip(d.flatten(1).max(1).values, d.flatten(1).float().mean(1))
        ]
    worst = sorted(range(len(per_image)), key=lambda i: per_image[i], reverse=True)[:3]
    return {
        "images": len(per_image),
        "mean_abs_levels": total / count,
        "max_abs_levels": max(m for m, _ in per_image),
        "fraction_above_2_levels": above_2 / count,
        "worst_images": [
            {"name": dataset.samples[i].name, "max": per_image[i][0], "mean": round(per_image[i][1], 3)}
            for i in worst
        ],
        "note": "uint8 crops, device path vs PIL path; nvJPEG and libjpeg-turbo differ by design (IDCT, "
        "chroma upsampling), the resize itself equals PIL's (tests/test_data_gpu.py)",
    }


def _edge_decodes(dataset, dev) -> Dict[str, Any]:
    """How nvJPEG itself does on the set's grayscale and CMYK edge images (routed to PIL by the runner)."""
    import numpy
    import torch
    import torchvision

    from runner_in_container.data.decode import decode_rgb

    found: Dict[str, Any] = {}
    for number, kind in ((1, "cmyk"), (2, "grayscale")):
        name = "ILSVRC2012_val_{:08d}.JPEG".format(number)
        index = next((i for i, s in enumerate(dataset.samples) if s.name.endswith(name)), None)
        if index is None:
            continue
        data = dataset.read(index)
        expected = torch.from_numpy(numpy.asarray(decode_rgb(data, name)).copy()).permute(2, 0, 1)
        try:
            got = torchvision.io.decode_jpeg(
                torch.frombuffer(bytearray(data), dtype=torch.uint8),
                mode=torchvision.io.ImageReadMode.RGB,
                device=dev,
            )
            found[kind] = {
                "mean_abs_levels_vs_pil": float((got.cpu().float() - expected.float()).abs().mean())
            }
        except (RuntimeError, ValueError) as exc:  # a diagnostic: whatever nvJPEG says is the finding
            found[kind] = {"error": (str(exc).splitlines() or [type(exc).__name__])[0]}
    return found


def _data_path_rates(args: argparse.Namespace, dev, pp, batched: bool) -> Dict[str, Any]:
    """img/s of the device data path alone over the whole set: the loader, and the decoder by itself."""
    import torch
    import torchvision

    from runner_in_container.data import open_dataset
    from runner_in_container.data.device_loader import DeviceBatchLoader
    from runner_in_container.data.jpeg_info import cpu_reason, read_header

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    dataset = open_dataset(args.data, limit=args.all_images)
    loader = DeviceBatchLoader(dataset, args.batch_size, pp, dev, workers=args.workers, batched=batched)
    sync()
    start, images = time.perf_counter(), 0
    for batch in loader:
        images += batch.valid
    sync()
    loader_s = time.perf_counter() - start
    blobs = [dataset.read(i) for i in range(len(dataset.samples))]
    encoded = [
        torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs if cpu_reason(read_header(b)) is None
    ]
    mode, bs = torchvision.io.ImageReadMode.RGB, args.batch_size
    start = time.perf_counter()
    calls = [encoded[i : i + bs] for i in range(0, len(encoded), bs)] if batched else encoded
    for call in calls:
        torchvision.io.decode_jpeg(call, mode=mode, device=dev)
    sync()
    decode_s = time.perf_counter() - start
    return {
        "images": images,
        "loader_img_per_s": images / loader_s,
        "decode_only_img_per_s": len(encoded) / decode_s,
        "decode_only_what": "decode_jpeg over {} JPEGs already in memory, {} per call".format(
            len(encoded), bs if batched else 1
        ),
        "mean_file_kib": sum(len(b) for b in blobs) / len(blobs) / 1024.0,
    }


def child_check(args: argparse.Namespace) -> Dict[str, Any]:
    """Accuracy check on the first images: eager fp32 on PIL input vs the fast path, and the pixel gap."""
    import torch

    from runner_in_container.data import open_dataset
    from runner_in_container.data.device_loader import DeviceBatchLoader
    from runner_in_container.data.loader import BatchLoader
    from runner_in_container.data.nvjpeg_probe import probe_device_decoder

    dev = torch.device(args.device)
    case, model = _model(args.weights)
    pp = case.preprocessing
    dataset = open_dataset(args.data, limit=args.images)
    batched = probe_device_decoder(dev) if dev.type == "cuda" else True
    pil = [(b.images, b.valid) for b in BatchLoader(dataset, args.batch_size, pp, workers=_nproc())]
    loader = DeviceBatchLoader(dataset, args.batch_size, pp, dev, workers=args.workers, batched=batched)
    device = [(b.images, b.valid) for b in loader]
    work = str(Path(args.out).parent / "work")
    reference = toolkit_logits("pytorch", "fp32", model, pil, dev, pp, work)
    fast = toolkit_logits(args.toolkit, args.precision, model, device, dev, pp, work)
    ref_pil, ref_device = reference(pil), reference(device)
    fast_device, fast_pil = fast(device), fast(pil)
    top = ref_pil.topk(2, dim=1).values
    return {
        "images": len(dataset.samples),
        "reference": "eager fp32 (TF32 off) on PIL input",
        "fast": "{} {} on {} input".format(
            args.toolkit, args.precision, "nvJPEG" if dev.type == "cuda" else "CPU"
        ),
        "fast_vs_reference": _compare(ref_pil, fast_device),
        "compute_only": _compare(ref_pil, fast_pil),
        "data_only": _compare(ref_pil, ref_device),
        "reference_distinct_top1_classes": int(ref_pil.argmax(1).unique().numel()),
        "reference_median_margin_rel": float((top[:, 0] - top[:, 1]).median()) / float(ref_pil.std()),
        "pixels": _pixel_differences(device, pil, dataset),
        "data_path": _data_path_rates(args, dev, pp, batched),
        "nvjpeg_on_edge_images": _edge_decodes(dataset, dev) if dev.type == "cuda" else None,
    }


CHILDREN = {"weights": child_weights, "reference": child_reference, "check": child_check}


def child_main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.h200_bench child")
    parser.add_argument("kind", choices=sorted(CHILDREN))
    for flag in ("--data", "--weights", "--device", "--precision", "--out", "--toolkit"):
        parser.add_argument(flag)
    for flag in ("--images", "--all-images", "--batch-size", "--workers", "--warmup"):
        parser.add_argument(flag, type=int)
    args = parser.parse_args(argv)
    result = CHILDREN[args.kind](args)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


# ------------------------------------------------------------------------------------ the bench
def peak_flops(device_name: str, precision: str) -> Optional[Tuple[float, str]]:
    try:
        import vendors
    except ImportError:
        return None
    vendor = "nvidia" if device_name != "cpu" else "cpu"
    return vendors.get(vendor).peak_flops(device_name, precision)


def ensure_data(args: argparse.Namespace, budget: Budget, dest: Path) -> Tuple[Optional[str], str]:
    """(the set's val folder or None, what happened)."""
    root = Path(args.data).resolve()
    val = root / "val"
    if val.is_dir():
        found = sum(len(files) for _, _, files in os.walk(str(val)))
        if found != args.images:
            return (
                None,
                f"{val} holds {found} images, not {args.images}: remove {root} or pass another --data",
            )
        return str(val), f"reused {found} images in {val}"
    timeout = budget.timeout("generate")
    if timeout is None:
        return None, "no time left to generate the set"
    argv = [
        sys.executable,
        "-m",
        "runner_in_container.data.generate",
        str(root),
        "--images",
        str(args.images),
    ]
    argv += ["--layout", "imagefolder", "--edge-cases", "--workers", str(_nproc())]
    rc, wall = run_child(argv, dest / "generate.log", timeout)
    if rc != 0:
        return None, "generation failed ({}): {}".format(_status(rc, timeout), _tail(dest / "generate.log"))
    return str(val), f"generated {args.images} images in {wall:.0f} s ({_nproc()} processes)"


def _status(rc: Optional[int], timeout: float) -> str:
    return f"timed out after {timeout:.0f} s" if rc is None else f"exit status {rc}"


def child_row(
    kind: str, args: argparse.Namespace, budget: Budget, dest: Path, extra: List[str]
) -> Dict[str, Any]:
    """Run a child step of this script; its JSON result, or {"status": why not}."""
    step = {"weights": "weights", "reference": "a", "check": "check"}[kind]
    timeout = budget.timeout(step)
    if timeout is None:
        return {"status": "skipped: the time budget is spent"}
    out = dest / "runs" / step
    out.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bench.h200_bench", "child", kind, "--device", args.device]
    argv += ["--out", str(out / "child.json")] + extra
    rc, wall = run_child(argv, out / "child.log", timeout)
    if rc != 0:
        return {"status": "failed: " + _status(rc, timeout), "log_tail": _tail(out / "child.log")}
    return dict(json.loads((out / "child.json").read_text()), status="ok", e2e_s=wall)


@contextlib.contextmanager
def mps_daemon(dest: Path) -> Iterator[Tuple[Optional[Dict[str, str]], str]]:
    """An MPS control daemon of the bench's own, quit on leaving: (the environment of a process that
    joins it, or None where it could not start, and why not)."""
    control = shutil.which(MPS_CONTROL)
    if control is None:
        yield None, f"no {MPS_CONTROL} on PATH"
        return
    folders = {
        "CUDA_MPS_PIPE_DIRECTORY": dest / "mps" / "pipe",
        "CUDA_MPS_LOG_DIRECTORY": dest / "mps" / "log",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **{name: str(folder) for name, folder in folders.items()})
    started = subprocess.run([control, "-d"], env=env, capture_output=True, text=True, timeout=30)
    if started.returncode != 0:
        yield None, f"{MPS_CONTROL} -d: exit status {started.returncode}: {started.stderr.strip()[:200]}"
        return
    try:
        yield env, ""
    finally:
        subprocess.run([control], input="quit\n", env=env, capture_output=True, text=True, timeout=30)


def runner_row(
    key: str, budget: Budget, dest: Path, options: List[str], env: Optional[Dict[str, str]] = None
) -> Dict[str, Any]:
    """Run ``python -m runner_in_container`` for row ``key`` (in ``env``); the figures of its result.json."""
    timeout = budget.timeout(key)
    if timeout is None:
        return {"status": "skipped: the time budget is spent"}
    out = dest / "runs" / key
    argv = [sys.executable, "-m", "runner_in_container"] + options + ["--out", str(out)]
    out.mkdir(parents=True, exist_ok=True)
    rc, wall = run_child(argv, dest / "runs" / (key + ".log"), timeout, env)
    result_path = out / "result.json"
    if not result_path.is_file():
        return {
            "status": "failed: " + _status(rc, timeout),
            "log_tail": _tail(dest / "runs" / (key + ".log")),
        }
    doc = json.loads(result_path.read_text())
    figures = collect.read(doc).figures  # None for a failed run: its document carries the error
    infer, val = (figures.infer, figures.val) if figures else (None, None)
    row = {
        "status": "ok" if rc == 0 else "failed: {} ({})".format(_status(rc, timeout), doc.get("status")),
        "argv": argv[1:],
        "e2e_s": wall,
        "e2e_own_s": figures.e2e_time_s if figures else None,
        "images": infer.images if infer else None,
        "passes": dig(doc, "stages", protocol.STAGE_INFER, "passes"),
        "p_core": infer.throughput_core_img_per_s if infer else None,
        "p_whole": infer.throughput_whole_img_per_s if infer else None,
        "mem_used_gib": figures.memory.mem_used_gib if figures else None,
        "mem_total_gib": figures.memory.mem_total_gib if figures else None,
        "flops_per_image": figures.flops_per_image if figures else None,
        "compile_s": dig(doc, "stages", protocol.STAGE_INFER, "compile_s"),
        "latency_ms": dig(doc, "stages", protocol.STAGE_INFER, "latency_ms"),
        "warnings": doc.get("warnings"),
        "decoder": dig(doc, "data", "decoder"),
        "decoder_fallback_reason": dig(doc, "data", "decoder_fallback_reason"),
        "cpu_fallback_reasons": dig(doc, "data", "cpu_fallback_reasons"),
        "agreement_top1_val_vs_infer": doc.get("agreement_top1"),
        "val_p_whole": val.throughput_whole_img_per_s if val else None,
        "result": str(result_path),
    }
    if doc.get("error"):
        row["error"] = "{stage}/{step}: {type}: {message}".format(**doc["error"])
    if rc != 0:
        row["log_tail"] = _tail(dest / "runs" / (key + ".log"))
    return row


LABELS = {
    "a": "reference style: DataLoader(PIL, 8 procs) + eager + sync per batch",
    "b": "runner: pytorch, PIL decoder",
    "c": "runner: cudnn_fused, nvJPEG decoder",
    "d": "runner: inductor, nvJPEG decoder",
    "e": "runner: cudnn_fused, nvJPEG decoder in the runner's process",
    "f": "runner: cudnn_fused, nvJPEG decoder, under MPS",
}


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else str(value)


def table_rows(rows: Dict[str, Dict[str, Any]], check: Dict[str, Any], peak: Optional[Tuple[float, str]]):
    """The table as (header, lines) of strings."""
    header = [
        "row",
        "path",
        "p_core img/s",
        "p_whole img/s",
        "e2e s",
        "mem GiB",
        "MFU",
        "agree fp32",
        "status",
    ]
    lines = []
    for key, row in rows.items():
        value = protocol.mfu(row.get("flops_per_image"), row.get("p_core"), peak[0] if peak else None)[0]
        mfu = None if value is None else "{:.1%}".format(value)
        agree = None
        if key == "c" and check.get("status") == "ok":
            agree = "{:.2%}".format(check["fast_vs_reference"]["agreement_top1"])
        mem = None
        if row.get("mem_used_gib") is not None:
            mem = "{:.1f}/{:.0f}".format(row["mem_used_gib"], row.get("mem_total_gib") or 0)
        lines.append(
            [
                key,
                LABELS[key],
                _fmt(row.get("p_core")),
                _fmt(row.get("p_whole")),
                _fmt(row.get("e2e_s"), 1),
                _fmt(mem),
                _fmt(mfu),
                _fmt(agree),
                row["status"],
            ]
        )
    return header, lines


def render_text(header: List[str], lines: List[List[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def _agreement(figures: Dict[str, float]) -> str:
    return "top-1 agreement {:.2%}, logit error mean {:.2%} / max {:.2%} of the logits' std".format(
        figures["agreement_top1"], figures["logit_error_mean_rel"], figures["logit_error_max_rel"]
    )


def notes(report: Dict[str, Any]) -> List[str]:
    """What the table does not say: the set, weights, peak, decoders, warnings, errors, the check."""
    rows, check = report["rows"], report["check"]
    found = ["set: {} ({})".format(report["data"]["path"], report["data"]["what"])]
    if report["dry_run"]:
        found.append("dry run: c, d, e and the check ran toolkit pytorch and decoder auto, batch 8")
    found.append("weights: {}".format(report["weights"].get("weights")))
    if report["peak"]:
        found.append("MFU peak: {:.4g} FLOP/s ({})".format(*report["peak"]))
    warnings: Dict[str, List[str]] = {}
    for key, row in rows.items():
        if row.get("decoder"):
            found.append(
                f"{key}: {row.get('images')} images in {row.get('passes')} pass(es); {row['decoder']}"
            )
        if row.get("decoder_fallback_reason"):
            found.append(f"{key}: --decoder auto ran PIL: {row['decoder_fallback_reason']}")
        if row.get("agreement_top1_val_vs_infer") is not None:
            found.append(
                "{}: val stage (pytorch, same decoder) p_whole {}, top-1 agreement val/infer {:.2%}".format(
                    key, _fmt(row.get("val_p_whole")), row["agreement_top1_val_vs_infer"]
                )
            )
        if row.get("cpu_fallback_reasons"):
            found.append(f"{key}: images decoded by PIL instead, per pass: {row['cpu_fallback_reasons']}")
        for warning in row.get("warnings") or []:
            warnings.setdefault(warning, []).append(key)
        if row.get("error"):
            found.append(f"{key}: error: {row['error']}")
    found += ["{}: warning: {}".format(", ".join(keys), warning) for warning, keys in warnings.items()]
    if check.get("status") != "ok":
        return found + ["check: {}".format(check.get("status"))]
    pixels = check["pixels"]
    found += [
        "check on the first {} images, against {}:".format(check["images"], check["reference"]),
        "  {}: {}".format(check["fast"], _agreement(check["fast_vs_reference"])),
        "  the same on PIL input (compute only): {}".format(_agreement(check["compute_only"])),
        "  eager fp32 on the device path's input (data only): {}".format(_agreement(check["data_only"])),
        "  the reference model: {} distinct top-1 classes, median top-1 margin {:.3f} x logits' std".format(
            check["reference_distinct_top1_classes"], check["reference_median_margin_rel"]
        ),
        "  pixels, device path vs PIL path: mean {:.3f} levels, max {}, {:.3%} of pixels above 2 levels; "
        "worst {}".format(
            pixels["mean_abs_levels"],
            pixels["max_abs_levels"],
            pixels["fraction_above_2_levels"],
            pixels["worst_images"],
        ),
    ]
    rates = check["data_path"]
    found.append(
        "  data path alone over {} images ({:.0f} KiB per file): device loader {:.0f} img/s; decoder "
        "alone {:.0f} img/s ({})".format(
            rates["images"],
            rates["mean_file_kib"],
            rates["loader_img_per_s"],
            rates["decode_only_img_per_s"],
            rates["decode_only_what"],
        )
    )
    if check.get("nvjpeg_on_edge_images"):
        found.append(
            "  nvJPEG itself on the edge images (the runner sends them to PIL): {}".format(
                check["nvjpeg_on_edge_images"]
            )
        )
    return found


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--dest", default=str(REPO / "results" / "bench_h200"), help="output folder")
    add("--data", default=str(REPO / ".cache" / "bench_data"), help="the generated set's folder")
    add("--images", type=int, default=20000, help="images in the set (default 20000)")
    add("--weights", default="random", help="a weights file, or random (BatchNorm re-estimated)")
    add("--device", default="cuda")
    add("--batch-size", type=int, default=256)
    add("--repeat", type=int, default=3, help="passes of rows c to f (a and b make one)")
    add("--check-images", type=int, default=2048)
    add("--budget-s", type=float, default=540.0, help="wall-time budget of the whole bench (s)")
    add("--skip", default="", help="rows to leave out, e.g. d")
    add("--dry-run", action="store_true", help="plumbing: batch 8, warm-up 1, toolkit pytorch")
    return parser.parse_args(argv)


class Plan:
    """What each step of one bench run gets."""

    def __init__(self, args: argparse.Namespace, val: str, weights: str, peak) -> None:
        self.precision = PRECISION_ON["cuda" if args.device.startswith("cuda") else "cpu"]
        self.fast = "pytorch" if args.dry_run else "cudnn_fused"
        self.warmup = "1" if args.dry_run else "10"
        self.sizes = ["--data", val, "--weights", weights, "--batch-size", str(args.batch_size)]
        self.sizes += ["--precision", self.precision]
        self.runner = self.sizes + ["--case", "resnet50", "--device", args.device, "--warmup", self.warmup]
        if peak:
            self.runner += ["--peak-flops", repr(peak[0]), "--peak-source", peak[1]]
        device_data = ["--decoder", "auto" if args.dry_run else "nvjpeg", "--repeat", str(args.repeat)]
        self.rows = {
            "b": ["--toolkit", "pytorch", "--decoder", "pil", "--repeat", "1"],
            "c": ["--toolkit", self.fast] + device_data,
            "d": ["--toolkit", "pytorch" if args.dry_run else "inductor"] + device_data,
            "e": ["--toolkit", self.fast, "--decode-processes", "1"] + device_data,
        }
        workers = 2 if args.dry_run else REFERENCE_WORKERS
        self.reference = self.sizes + ["--images", str(args.images), "--workers", str(workers)]
        self.reference += ["--warmup", self.warmup]
        self.check = self.sizes + ["--images", str(min(args.check_images, args.images))]
        self.check += ["--toolkit", self.fast, "--workers", "4", "--all-images", str(args.images)]


def run_rows(
    args: argparse.Namespace, budget: Budget, dest: Path, report: Dict[str, Any], plan: Plan
) -> None:
    """Rows c, f, e, a, b, the check, d: the most wanted first, in case the budget runs out."""
    rows: Dict[str, Dict[str, Any]] = {}
    for key in ("c", "f", "e", "a", "b", "check", "d"):
        if key in args.skip:
            continue
        print(f"{key}: running", flush=True)
        if key == "f":
            with mps_daemon(dest) as (env, why):
                if env is None:
                    rows[key] = {"status": f"skipped: {why}"}
                else:
                    rows[key] = runner_row(key, budget, dest, plan.runner + plan.rows["c"], env)
        elif key == "a":
            rows[key] = child_row("reference", args, budget, dest, plan.reference)
        elif key == "check":
            report["check"] = child_row("check", args, budget, dest, plan.check)
        else:
            rows[key] = runner_row(key, budget, dest, plan.runner + plan.rows[key])
        print("{}: {}".format(key, (report["check"] if key == "check" else rows[key])["status"]), flush=True)
    report["rows"] = {k: rows[k] for k in ROWS if k in rows}


def write_report(dest: Path, report: Dict[str, Any], text_lines: List[str]) -> None:
    header, lines = table_rows(report["rows"], report["check"], report["peak"])
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(START))
    table = as_markdown([dict(zip(header, line)) for line in lines], [(h, h) for h in header])
    markdown = [f"# H200 bench, {started}", "", table]
    markdown += [("  - " if line.startswith("  ") else "- ") + line.strip() for line in text_lines]
    (dest / "bench.md").write_text("\n".join(markdown) + "\n")
    (dest / "bench.json").write_text(json.dumps(report, indent=1, default=str))
    print(render_text(header, lines))
    print("\n".join(text_lines))
    for key, row in list(report["rows"].items()) + [("check", report["check"])]:
        if row.get("log_tail"):
            print(f"--- {key}: the end of its log ---\n{row['log_tail']}")


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "child":
        return child_main(argv[1:])
    args = parse(argv)
    if args.dry_run:
        args.batch_size = min(args.batch_size, 8)
    dest = Path(args.dest).resolve()
    (dest / "runs").mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    report: Dict[str, Any] = {"argv": sys.argv, "started_at_unix": START, "dry_run": args.dry_run}
    report.update(rows={}, check={"status": "not run"}, peak=None, weights={"status": "not run"})
    val, what = ensure_data(args, budget, dest)
    report["data"] = {"path": val, "what": what, "images": args.images}
    print("data:", what, flush=True)
    if val is not None:
        precision = PRECISION_ON["cuda" if args.device.startswith("cuda") else "cpu"]
        sizes = ["--data", val, "--batch-size", str(args.batch_size), "--precision", precision]
        sizes += ["--weights", args.weights, "--images", str(min(args.check_images, args.images))]
        report["weights"] = child_row("weights", args, budget, dest, sizes)
        print("weights:", report["weights"].get("weights") or report["weights"]["status"], flush=True)
    if report["weights"]["status"] == "ok":
        report["peak"] = peak_flops(report["weights"]["device"], precision)
        run_rows(args, budget, dest, report, Plan(args, val, report["weights"]["weights"], report["peak"]))
    write_report(dest, report, notes(report) if report["weights"]["status"] == "ok" else [what])
    wanted = [key for key in ROWS if key not in args.skip]
    complete = all(report["rows"].get(key, {}).get("status") == "ok" for key in wanted)
    return 0 if complete and report["check"].get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
