"""Several decoding processes (data/decode_procs.py) on the CPU: the same batches as one process, in order,
every pass decoding again; errors, a dying process, a pass left half-way; the tar layout travels."""

import os
import pickle
import signal
from pathlib import Path

import pytest
import torch

from runner_in_container.data import DataError, decoder_choice, device_loader, open_dataset
from runner_in_container.data.decode_procs import ProcessBatchLoader
from runner_in_container.data.decode_serve import shard_indices
from runner_in_container.data.generate import generate, labels_path
from runner_in_container.data.layouts import Subset
from runner_in_container.data.pipeline import open_loader
from runner_in_container.data.preprocess import Preprocessing
from runner_in_container.data.spawned import Spawned

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

PP = Preprocessing()
CPU = torch.device("cpu")


@pytest.fixture
def flat(tmp_path):
    """11 images: 1-3 are a CMYK JPEG, a grayscale JPEG and a PNG behind .JPEG (the CPU path)."""
    path = generate(str(tmp_path / "set"), 11, layout="flat", seed=5, edge_cases=True, size=(300, 260))
    return path, labels_path(str(tmp_path / "set"), "flat")


def _alive(loader: ProcessBatchLoader) -> int:
    return sum(process.is_alive() for process in loader._processes)


def test_shards_take_every_pth_batch():
    assert shard_indices(11, 4, 0, 2) == [0, 1, 2, 3, 8, 9, 10]
    assert shard_indices(11, 4, 1, 2) == [4, 5, 6, 7]
    assert shard_indices(11, 4, 2, 3) == [8, 9, 10] and shard_indices(3, 4, 1, 2) == []
    shards = [shard_indices(50000, 256, rank, 3) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(50000))


def test_a_subset_reads_through_its_parent(flat):
    ds = open_dataset(*flat)
    part = Subset(ds, [7, 2])
    assert part.samples == [ds.samples[7], ds.samples[2]] and part.location(1) == ds.location(2)
    assert part.read(0) == ds.read(7) and part.labels_source == ds.labels_source


def test_batches_equal_one_process_in_order_pass_after_pass(flat):
    path, labels = flat
    ds = open_dataset(path, labels)
    alone = device_loader.DeviceBatchLoader(ds, 4, PP, CPU, workers=2)
    want = [(b.images.clone(), b.labels, b.valid) for b in alone]
    loader = ProcessBatchLoader(ds, 4, PP, CPU, processes=2, workers=2, slots=2)
    try:
        assert len(loader) == 3 and loader.cpu_fallbacks is None
        got = [(b.images.clone(), b.labels, b.valid) for b in loader]
        assert [g[2] for g in got] == [4, 4, 3]
        for (images, labels_, valid), (w_images, w_labels, w_valid) in zip(got, want):
            assert torch.equal(images, w_images) and torch.equal(labels_, w_labels) and valid == w_valid
        assert (
            loader.cpu_fallbacks
            == alone.cpu_fallbacks
            == {"CMYK or YCCK JPEG": 1, "grayscale JPEG": 1, "not a JPEG": 1}
        )
        Path(path, ds.samples[6].name).write_bytes(Path(path, ds.samples[4].name).read_bytes())
        second = [b.images.clone() for b in loader]  # batch 1, from process 1, decoded again
        assert torch.equal(second[1][2], got[1][0][0]) and not torch.equal(second[1][2], got[1][0][2])
        assert torch.equal(second[2], got[2][0])
    finally:
        loader.close()
    assert _alive(loader) == 0


def test_the_tar_layout_reopens_in_each_process(tmp_path):
    out = str(tmp_path / "tarset")
    ds = open_dataset(generate(out, 6, layout="tar", size=(120, 90)), labels_path(out, "tar"))
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.read(3) == ds.read(3) and copy._fd != ds._fd
    loader = ProcessBatchLoader(ds, 2, PP, CPU, processes=3, workers=1)
    try:
        got = [b.images.clone() for b in loader]
    finally:
        loader.close()
    want = [b.images for b in device_loader.DeviceBatchLoader(ds, 2, PP, CPU, workers=1)]
    assert len(got) == 3 and all(torch.equal(g, w) for g, w in zip(got, want))


def test_a_broken_file_fails_the_pass_naming_it_and_the_processes_stop(flat):
    path, labels = flat
    ds = open_dataset(path, labels)
    Path(path, ds.samples[9].name).write_bytes(b"\xff\xd8 not really a JPEG")
    loader = ProcessBatchLoader(ds, 4, PP, CPU, processes=2, workers=2)
    seen = []
    with pytest.raises(DataError, match=ds.samples[9].name + ": cannot decode image"):
        for batch in loader:
            seen.append(batch.valid)
    assert seen == [4, 4] and _alive(loader) == 0
    with pytest.raises(RuntimeError, match="closed"):
        next(iter(loader))


def test_a_pass_left_half_way_closes_the_loader(flat):
    loader = ProcessBatchLoader(open_dataset(*flat), 2, PP, CPU, processes=2, workers=1)
    iterator = iter(loader)
    next(iterator)
    iterator.close()
    assert _alive(loader) == 0


def test_the_processes_start_and_warm_up_before_the_first_pass(flat):
    loader = ProcessBatchLoader(open_dataset(*flat), 4, PP, CPU, processes=2, workers=1)
    try:
        assert loader._processes == []  # made, not started
        loader.start()  # returns at once: the processes start on their own
        assert _alive(loader) == 2 and loader.start_s is None and loader.start_phases is None
        assert loader.wait_started() == loader.start_s > 0
        phases = loader.start_phases
        assert list(phases) == ["spawned", "imported", "set_up", "ready"]  # no device known ahead
        assert list(phases.values()) == sorted(phases.values())
        assert phases["ready"] - phases["spawned"] == pytest.approx(loader.start_s, abs=0.05)
        assert len(list(loader)) == 3
    finally:
        loader.close()


def test_processes_spawned_ahead_serve_their_loader_or_are_stopped(flat):
    ds = open_dataset(*flat)
    nvjpeg = decoder_choice.Decoder("nvjpeg", "d", "r", True, None, 2)
    spawned = Spawned(2, device="cpu")  # warmed on a probe image once the loader lets them use the device
    loader = open_loader(nvjpeg, ds, 4, PP, CPU, 1, False, spawned)
    try:
        assert loader._spawned is spawned and _alive(loader) == 0  # not started: the loader has none yet
        loader.start()
        assert loader._processes == spawned.members and _alive(loader) == 2
        want = [b.images for b in device_loader.DeviceBatchLoader(ds, 4, PP, CPU, workers=1)]
        assert all(torch.equal(b.images, w) for b, w in zip(loader, want))
        assert loader.start_s >= 0
        assert list(loader.start_phases) == ["spawned", "imported", "device", "set_up", "ready"]
        assert list(loader.start_phases.values()) == sorted(loader.start_phases.values())
    finally:
        loader.close()
    assert not any(p.is_alive() for p in spawned.members)
    other = Spawned(3)  # as many as another decoder would use: stopped, and the loader spawns none
    assert (
        type(open_loader(decoder_choice.pil_decoder(), ds, 4, PP, CPU, 1, False, other)).__name__
        == "BatchLoader"
    )
    assert not any(p.is_alive() for p in other.members)


def test_a_process_that_dies_is_named(flat):
    loader = ProcessBatchLoader(open_dataset(*flat), 4, PP, CPU, processes=2, workers=1)
    loader.wait_started()
    os.kill(loader._processes[1].pid, signal.SIGKILL)
    seen = []
    try:
        with pytest.raises(RuntimeError, match=r"decoding process 1 of 2 died \(exit code -9\)"):
            for batch in loader:
                seen.append(batch.valid)
        assert seen == [4]
    finally:
        loader.close()
    assert _alive(loader) == 0


def test_bad_settings(flat):
    with pytest.raises(ValueError, match="processes must be at least 1, got 0"):
        ProcessBatchLoader(open_dataset(*flat), 4, PP, CPU, processes=0)
