"""Deterministic synthetic ImageNet-val look-alikes in each layout, for tests and throughput runs.

numpy + PIL only (no torch): the control machine runs it. Image ``n`` (1-based) depends only on
(seed, n), so the bytes are the same for any number of worker processes. Content is a smooth colour
field plus Gaussian noise of random strength per 24-pixel block, JPEG quality 90, which gives
ImageNet-like files (about 110 KB at 500x375); each image's sides vary by up to 15% around ``size``.

Layouts (``out`` must be absent or empty; the set is built beside it and renamed into place):

* ``imagefolder``: ``out/val/n9XXXXXXX/ILSVRC2012_val_%08d.JPEG`` for all 1000 synthetic wnids
  (``n9`` + 7-digit class index, so sorted order == index), images dealt round-robin over classes;
  labels file ``out/synset_words.txt``. Returns ``out/val``.
* ``flat``: ``out/ILSVRC2012_img_val/ILSVRC2012_val_%08d.JPEG`` + ``out/val.txt`` (seeded random
  labels). Returns the folder.
* ``tar``: ``out/ILSVRC2012_img_val.tar`` (ustar, fixed metadata) + ``out/val.txt``. Returns the tar.

``edge_cases=True`` renders images 1, 2 and 3 as a CMYK JPEG, a grayscale JPEG and a PNG (RGBA)
behind a ``.JPEG`` name; the count stays ``images``.

CLI: ``python -m runner_in_container.data.generate OUT --images N [--layout L] [--seed S]
[--edge-cases] [--size 500x375] [--workers W]``; prints the dataset and labels paths.
"""

import argparse
import io
import multiprocessing
import os
import shutil
import sys
import tarfile
import tempfile
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..contract import DATASET_LAYOUTS
from .errors import DataError

NUM_CLASSES = 1000
FILE_NAME = "ILSVRC2012_val_{:08d}.JPEG"
FLAT_DIR = "ILSVRC2012_img_val"
TAR_NAME = "ILSVRC2012_img_val.tar"
JPEG_QUALITY = 90
_NOISE = 72.0  # peak per-block noise amplitude, tuned for ~110 KB at 500x375
_BLOCK = 24
_EDGE_MODES = {1: "CMYK", 2: "L", 3: "PNG"}

_Job = Tuple[int, int, Tuple[int, int], Optional[str]]  # seed, image number, size, edge case


def synthetic_wnid(index: int) -> str:
    """Wnid-shaped name of synthetic class ``index``; sorted order == index order."""
    return f"n9{index:07d}"


def labels_path(out: str, layout: str) -> str:
    """The labels file that ``generate(out, layout=layout)`` writes."""
    return os.path.join(out, "synset_words.txt" if layout == "imagefolder" else "val.txt")


def dataset_path(out: str, layout: str) -> str:
    """The path that ``generate(out, layout=layout)`` returns."""
    return os.path.join(out, {"imagefolder": "val", "flat": FLAT_DIR, "tar": TAR_NAME}[layout])


def render(seed: int, number: int, size: Tuple[int, int]) -> Image.Image:
    """Synthetic RGB photo stand-in number ``number``."""
    rng = np.random.default_rng([seed, number])
    w = max(1, int(round(size[0] * rng.uniform(0.85, 1.15))))
    h = max(1, int(round(size[1] * rng.uniform(0.85, 1.15))))
    grid = rng.integers(0, 256, (int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(grid, "RGB").resize((w, h), Image.BILINEAR), dtype=np.float32)
    amp = rng.uniform(0.0, _NOISE, (-(-h // _BLOCK), -(-w // _BLOCK))).astype(np.float32)
    amp = np.repeat(np.repeat(amp, _BLOCK, axis=0), _BLOCK, axis=1)[:h, :w, None]
    luma = rng.standard_normal((h, w, 1), dtype=np.float32)
    chroma = rng.standard_normal((h, w, 3), dtype=np.float32) * 0.25
    pixels = np.clip(base + (luma + chroma) * amp, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def encode(job: _Job) -> bytes:
    """Encoded bytes of one image (JPEG, or an edge case)."""
    seed, number, size, edge = job
    img = render(seed, number, size)
    buf = io.BytesIO()
    if edge == "PNG":
        img.putalpha(Image.linear_gradient("L").resize(img.size))
        img.save(buf, "PNG")
    else:
        img.convert(edge or "RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _labels(images: int, layout: str, seed: int) -> List[int]:
    if layout == "imagefolder":
        return [i % NUM_CLASSES for i in range(images)]
    return np.random.default_rng([seed, 0x1ABE1]).integers(0, NUM_CLASSES, images).tolist()


def _encoded(jobs: Sequence[_Job], workers: int) -> Iterator[bytes]:
    if workers == 1:
        yield from map(encode, jobs)
        return
    # spawned, not forked: a fork of a process that runs threads (a test runner, torch's) can leave a worker
    # waiting forever on a lock that was held at the fork
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(encode, jobs, chunksize=8)


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _write_tar(path: str, names: Sequence[str], blobs: Iterator[bytes]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in zip(names, blobs):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


def _write_set(tmp: str, layout: str, names: List[str], labels: List[int], blobs: Iterator[bytes]) -> None:
    if layout == "tar":
        _write_tar(os.path.join(tmp, TAR_NAME), names, blobs)
    elif layout == "flat":
        os.mkdir(os.path.join(tmp, FLAT_DIR))
        for name, data in zip(names, blobs):
            _write_file(os.path.join(tmp, FLAT_DIR, name), data)
    else:
        for index in range(NUM_CLASSES):
            os.makedirs(os.path.join(tmp, "val", synthetic_wnid(index)))
        for name, label, data in zip(names, labels, blobs):
            _write_file(os.path.join(tmp, "val", synthetic_wnid(label), name), data)
    with open(labels_path(tmp, layout), "w", encoding="utf-8") as f:
        if layout == "imagefolder":
            f.writelines(f"{synthetic_wnid(i)} synthetic class {i}\n" for i in range(NUM_CLASSES))
        else:
            f.writelines(f"{name} {label}\n" for name, label in zip(names, labels))


def _check(out: str, images: int, layout: str, edge_cases: bool, size: Tuple[int, int], workers: int) -> None:
    if layout not in DATASET_LAYOUTS:
        raise DataError(f"{out}: unknown layout {layout!r} ({', '.join(DATASET_LAYOUTS)})")
    if images < (3 if edge_cases else 1):
        raise DataError(f"{out}: images must be at least {3 if edge_cases else 1}, got {images}")
    if min(size) < 1 or workers < 1:
        raise DataError(f"{out}: size and workers must be positive, got {size} and {workers}")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise DataError(f"{out}: exists and is not an empty folder")


def generate(
    out: str,
    images: int,
    layout: str = "imagefolder",
    seed: int = 0,
    edge_cases: bool = False,
    size: Tuple[int, int] = (500, 375),
    workers: int = 1,
) -> str:
    """Write a synthetic set of ``images`` images under ``out``; returns the path for open_dataset."""
    out = os.path.abspath(out)
    _check(out, images, layout, edge_cases, size, workers)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".generate-", dir=parent)
    try:
        numbers = range(1, images + 1)
        jobs = [(seed, n, size, _EDGE_MODES.get(n) if edge_cases else None) for n in numbers]
        names = [FILE_NAME.format(n) for n in numbers]
        _write_set(tmp, layout, names, _labels(images, layout, seed), _encoded(jobs, workers))
        os.chmod(tmp, 0o755)
        if os.path.isdir(out):
            os.rmdir(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dataset_path(out, layout)


def _size(text: str) -> Tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner_in_container.data.generate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("out", help="folder to create (absent or empty)")
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--layout", choices=DATASET_LAYOUTS, default="imagefolder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edge-cases", action="store_true", help="images 1-3: CMYK, grayscale, PNG-as-.JPEG")
    parser.add_argument("--size", type=_size, default=(500, 375), help="mean WIDTHxHEIGHT (default 500x375)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    args = parser.parse_args(argv)
    try:
        path = generate(
            args.out, args.images, args.layout, args.seed, args.edge_cases, args.size, args.workers
        )
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"dataset: {path}")
    print(f"labels: {labels_path(os.path.abspath(args.out), args.layout)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
