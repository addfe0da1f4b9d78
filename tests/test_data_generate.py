"""The synthetic set generator: determinism, layouts, edge cases, file sizes, CLI without torch."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner_in_container.data import DataError, open_dataset
from runner_in_container.data.generate import encode, generate, labels_path, synthetic_wnid

REPO = Path(__file__).resolve().parent.parent
SMALL = (48, 36)


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", ["flat", "tar"])
def test_same_seed_same_bytes_any_worker_count(tmp_path, layout):
    generate(str(tmp_path / "a"), 12, layout=layout, seed=4, edge_cases=True, size=SMALL)
    generate(str(tmp_path / "b"), 12, layout=layout, seed=4, edge_cases=True, size=SMALL, workers=2)
    generate(str(tmp_path / "c"), 12, layout=layout, seed=5, edge_cases=True, size=SMALL)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"]  # no temporary folders left behind


def test_imagefolder_has_all_classes_in_index_order(tmp_path):
    path = generate(str(tmp_path / "set"), 2005, seed=1, size=(8, 6))
    assert path == str(tmp_path / "set" / "val")
    dirs = sorted(os.listdir(path))
    assert len(dirs) == 1000 and dirs == [synthetic_wnid(i) for i in range(1000)]
    assert dirs[0] == "n90000000" and dirs[-1] == "n90000999"
    counts = [len(os.listdir(os.path.join(path, d))) for d in dirs]
    assert counts[:5] == [3, 3, 3, 3, 3] and counts[5:] == [2] * 995  # round-robin
    assert "ILSVRC2012_val_00001001.JPEG" in os.listdir(os.path.join(path, "n90000000"))
    synsets = labels_path(str(tmp_path / "set"), "imagefolder")
    assert Path(synsets).read_text().splitlines()[7] == "n90000007 synthetic class 7"
    ds = open_dataset(path, synsets)
    assert len(ds.samples) == 2005 and ds.samples[3].label == 1


def test_flat_and_tar_carry_the_same_images_and_labels(tmp_path):
    flat = generate(str(tmp_path / "flat"), 30, layout="flat", seed=2, size=SMALL)
    tar = generate(str(tmp_path / "tar"), 30, layout="tar", seed=2, size=SMALL)
    assert flat.endswith("ILSVRC2012_img_val") and tar.endswith("ILSVRC2012_img_val.tar")
    labels = Path(labels_path(str(tmp_path / "flat"), "flat")).read_text()
    assert labels == Path(labels_path(str(tmp_path / "tar"), "tar")).read_text()
    assert labels.splitlines()[0].startswith("ILSVRC2012_val_00000001.JPEG ")
    assert len({line.split()[1] for line in labels.splitlines()}) > 20  # labels are spread, not constant
    a = open_dataset(flat, labels_path(str(tmp_path / "flat"), "flat"))
    b = open_dataset(tar, labels_path(str(tmp_path / "tar"), "tar"))
    assert a.samples == b.samples
    assert all(a.read(i) == b.read(i) for i in range(30))


def test_edge_cases_are_what_they_claim(tmp_path):
    path = Path(generate(str(tmp_path / "set"), 4, layout="flat", edge_cases=True, size=SMALL))
    opened = [
        Image.open(io.BytesIO((path / f"ILSVRC2012_val_{n:08d}.JPEG").read_bytes())) for n in range(1, 5)
    ]
    assert [(img.format, img.mode) for img in opened] == [
        ("JPEG", "CMYK"),
        ("JPEG", "L"),
        ("PNG", "RGBA"),
        ("JPEG", "RGB"),
    ]


def test_full_size_images_are_imagenet_like():
    sizes, shapes = [], set()
    for number in range(1, 7):
        data = encode((0, number, (500, 375), None))
        sizes.append(len(data))
        img = Image.open(io.BytesIO(data))
        assert 425 <= img.width <= 575 and 318 <= img.height <= 432
        shapes.add(img.size)
    assert 70_000 < np.mean(sizes) < 160_000
    assert len(shapes) == 6


def test_refuses_bad_input_and_writes_nothing(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="full: exists and is not an empty folder"):
        generate(str(tmp_path / "full"), 3)
    with pytest.raises(DataError, match="unknown layout 'zip'"):
        generate(str(tmp_path / "new"), 3, layout="zip")
    with pytest.raises(DataError, match="images must be at least 3, got 2"):
        generate(str(tmp_path / "new"), 2, edge_cases=True)
    assert sorted(os.listdir(tmp_path)) == ["full"]
    (tmp_path / "empty").mkdir()
    assert generate(str(tmp_path / "empty"), 3, layout="flat", size=SMALL).endswith("ILSVRC2012_img_val")


def test_cli_prints_paths_and_never_imports_torch(tmp_path):
    out = tmp_path / "cli"
    code = (
        "import sys; from runner_in_container.data.generate import main; rc = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    args = [str(out), "--images", "5", "--layout", "tar", "--size", "48x36", "--workers", "2"]
    run = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"dataset: {out}/ILSVRC2012_img_val.tar", f"labels: {out}/val.txt"]
    again = [sys.executable, "-m", "runner_in_container.data.generate", str(out), "--images", "5"]
    run = subprocess.run(again, cwd=REPO, capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (2, f"error: {out}: exists and is not an empty folder\n")
