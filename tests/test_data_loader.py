"""BatchLoader: order, padding, no caching, error propagation, clean shutdown."""

import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from runner_in_container.data import DataError, open_dataset
from runner_in_container.data.decode import decode_rgb
from runner_in_container.data.generate import generate, labels_path
from runner_in_container.data.loader import BatchLoader
from runner_in_container.data.preprocess import Preprocessing, resize_crop_pil

PP = Preprocessing(resize=40, crop=32)


@pytest.fixture
def flat(tmp_path):
    """A writable flat set of 10 small images (edge cases included) and its labels file."""
    path = generate(str(tmp_path / "set"), 10, layout="flat", seed=11, edge_cases=True, size=(60, 45))
    return path, labels_path(str(tmp_path / "set"), "flat")


def _expected(ds, index):
    return torch.from_numpy(resize_crop_pil(decode_rgb(ds.read(index), "x"), PP).transpose(2, 0, 1).copy())


@pytest.mark.parametrize("workers, prefetch", [(1, 1), (3, 2), (4, 5)])
def test_batches_in_order_with_padded_last_batch(flat, workers, prefetch):
    ds = open_dataset(*flat)
    loader = BatchLoader(ds, 4, PP, workers=workers, prefetch=prefetch)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [b.valid for b in batches] == [4, 4, 2]
    for number, batch in enumerate(batches):
        assert batch.images.shape == (4, 3, 32, 32) and batch.images.dtype == torch.uint8
        assert batch.labels.dtype == torch.int64
        assert not batch.images.is_pinned()
        for slot in range(batch.valid):
            index = number * 4 + slot
            assert batch.labels[slot].item() == ds.samples[index].label
            assert torch.equal(batch.images[slot], _expected(ds, index))
    last = batches[-1]
    assert last.labels[2:].tolist() == [-1, -1]
    assert int(last.images[2:].abs().sum()) == 0


def test_exact_multiple_has_no_padding(flat):
    ds = open_dataset(*flat, limit=8)
    batches = list(BatchLoader(ds, 4, PP, workers=2))
    assert [b.valid for b in batches] == [4, 4]
    assert all((b.labels >= 0).all() for b in batches)


def test_every_pass_reads_the_files_again(flat):
    path, labels = flat
    ds = open_dataset(path, labels)
    loader = BatchLoader(ds, 4, PP, workers=2)
    first = [b.images.clone() for b in loader]
    assert all(torch.equal(a, b.images) for a, b in zip(first, loader))
    target = Path(path) / ds.samples[5].name
    shutil.copy(Path(path) / ds.samples[0].name, target)  # change one file on disk between passes
    second = [b.images for b in loader]
    assert torch.equal(second[1][1], first[0][0])
    assert not torch.equal(second[1][1], first[1][1])


def test_worker_errors_reach_the_consumer_with_the_file_name(flat):
    path, labels = flat
    ds = open_dataset(path, labels)
    broken = Path(path) / ds.samples[6].name
    broken.write_bytes(broken.read_bytes()[:100])
    seen = []
    with pytest.raises(
        DataError, match="ILSVRC2012_img_val/" + re.escape(ds.samples[6].name) + ": cannot decode image"
    ):
        for batch in BatchLoader(ds, 4, PP, workers=3):
            seen.append(batch.valid)
    assert seen == [4]  # the first batch arrived, the one holding the broken file did not
    broken.unlink()
    with pytest.raises(DataError, match=re.escape(ds.samples[6].name) + ": cannot read"):
        list(BatchLoader(ds, 4, PP, workers=2))


def test_a_pass_left_half_way_leaves_the_loader_whole_and_closing_leaves_no_threads(flat):
    ds = open_dataset(*flat)
    before = set(threading.enumerate())
    with BatchLoader(ds, 2, PP, workers=4, prefetch=3) as loader:
        loader.wait_started()
        started = [t for t in threading.enumerate() if t not in before]
        assert len(started) == 4  # started: the pool's threads run before any pass
        iterator = iter(loader)
        next(iterator)
        iterator.close()
        assert len(list(loader)) == len(loader)
        assert loader.start_s is not None and loader.start_s >= 0
        assert loader.wait_started() == loader.start_s  # started once: a later stage waits for nothing
        assert [t for t in threading.enumerate() if t not in before] == started
    assert not any(t.is_alive() for t in started)


def test_pinned_only_with_cuda(flat):
    ds = open_dataset(*flat)
    loader = BatchLoader(ds, 4, PP, workers=2, pin_memory=True)
    assert loader.pin_memory == torch.cuda.is_available()
    batch = next(iter(loader))
    assert batch.images.is_pinned() == torch.cuda.is_available()
    assert np.array_equal(batch.images[0].numpy(), _expected(ds, 0).numpy())


@pytest.mark.parametrize("field", ["batch_size", "workers", "prefetch"])
def test_bad_settings(flat, field):
    settings = {"batch_size": 4, "workers": 2, "prefetch": 2, field: 0}
    with pytest.raises(ValueError, match=f"{field} must be at least 1, got 0"):
        BatchLoader(open_dataset(*flat), pp=PP, **settings)
