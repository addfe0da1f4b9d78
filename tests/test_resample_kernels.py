"""resample_kernels.py: PIL's resize and crop in PIL's integer arithmetic, two Triton kernels a batch.

The kernels run here on CPU tensors through Triton's interpreter (TRITON_INTERPRET=1, read when the kernels
are defined: so in a fresh interpreter of their own), on small images: the result must be PIL's bit for bit,
in both pass orders, and a device loader resizing with them must give the exact (float64) products' batches.
Where they cannot run, ``usable`` says why and the run resizes with the products.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from runner_in_container.data import resample_kernels

REPO = Path(__file__).resolve().parent.parent

CHECK = textwrap.dedent(
    """
    import functools, sys
    import numpy as np, torch
    from PIL import Image
    from runner_in_container.data import open_dataset, resample, resample_kernels
    from runner_in_container.data.device_loader import DeviceBatchLoader
    from runner_in_container.data.preprocess import Preprocessing, resize_crop_pil

    pp = Preprocessing(resize=12, crop=8)
    rng = np.random.RandomState(0)
    shapes = [(24, 18), (18, 24), (13, 9), (40, 12), (12, 40), (8, 8)]
    arrays = [rng.randint(0, 256, (h, w, 3)).astype(np.uint8) for h, w in shapes]
    images = [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in arrays]
    geometries = [resample.geometry(h, w, pp) for h, w in shapes]
    slots = [2 * i + 1 for i in range(len(images))]
    out = torch.zeros((2 * len(images), 3, 8, 8), dtype=torch.uint8)
    resample_kernels.resize_crop_into(out, images, slots, pp, geometries)
    pil = np.stack([resize_crop_pil(Image.fromarray(a), pp).transpose(2, 0, 1) for a in arrays])
    assert (out[slots].numpy() == pil).all(), "differs from PIL"
    assert int(out[[s - 1 for s in slots]].sum()) == 0, "wrote outside its slots"
    for vertical_first in (False, True):
        flipped = [g._replace(vertical_first=vertical_first) for g in geometries]
        got, exact = torch.zeros_like(out), torch.zeros_like(out)
        resample_kernels.resize_crop_into(got, images, slots, pp, flipped)
        resample.resize_crop_into(exact, images, slots, pp, flipped, dtype=torch.float64)
        assert torch.equal(got, exact), "pass order %s differs from the exact products" % vertical_first

    dataset = open_dataset(sys.argv[1])
    batches = []
    for kernels in (True, False):
        loader = DeviceBatchLoader(dataset, 3, pp, torch.device("cpu"), workers=1, kernels=kernels)
        if not kernels:
            loader._resize = functools.partial(resample.resize_crop_into, dtype=torch.float64)
        batches.append([batch.images.clone() for batch in loader])
        loader.close()
    assert len(batches[0]) == 2 and all(torch.equal(a, b) for a, b in zip(*batches)), "the loaders differ"
    print("ok")
    """
)


@pytest.mark.slow
def test_the_kernels_give_pils_result_bit_for_bit_in_both_orders_and_in_the_loader(tmp_path: Path) -> None:
    pytest.importorskip("triton", reason="Triton comes with torch's Linux wheels (scripts/setup_venv.sh)")
    from PIL import Image

    folder = tmp_path / "val" / "n01440764"
    folder.mkdir(parents=True)
    for k, (height, width) in enumerate([(30, 22), (22, 30), (17, 17), (45, 20), (20, 45)]):
        pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / ("img%d.JPEG" % k), quality=90)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path / "val")],
        cwd=str(REPO),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_usable_says_why_the_kernels_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resample_kernels.usable(torch.device("cpu")) == (
        "the device is cpu: the kernels run on CUDA devices"
    )
    assert not resample_kernels.available(torch.device("cpu"))
    monkeypatch.setattr(resample_kernels, "triton", None)
    assert resample_kernels.usable(torch.device("cuda")) == "Triton is not importable"
    assert not resample_kernels.available(torch.device("cuda"))
