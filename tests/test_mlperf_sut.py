"""The systems under test against the real LoadGen, on the CPU with a stand-in model: the stream scenarios run
each query on LoadGen's issue thread, Offline batches on the batching thread; every sample's response is the
model's top-1 of that very sample (read back from LoadGen's accuracy log); a channels_last model gets
channels_last batches; a model that fails completes every sample and the run raises its error; at most
``IN_FLIGHT`` batches are queued ahead of their completion (against a stand-in LoadGen that holds it)."""

import threading
from pathlib import Path
from typing import List

import pytest
import torch

from runner_in_container.cases import discover
from runner_in_container.data import open_dataset
from runner_in_container.data.generate import generate
from runner_in_container.data.preprocess import normalize
from runner_in_container.device import Device
from runner_in_container.host_batches import decoded
from runner_in_container.mlperf import logs
from runner_in_container.mlperf.scenario import TIMED_CALLS, Model, run_scenario
from runner_in_container.mlperf.settings import Settings
from runner_in_container.mlperf.sut import IN_FLIGHT, BatchingSut, SampleLibrary

pytest.importorskip("mlperf_loadgen")

PP = discover()["resnet50"].preprocessing
IMAGES = 12


class StandIn:
    """A model whose top-1 is a function of each sample's pixels; it notes the threads and layouts it saw
    and fails from call ``fail_at`` on."""

    def __init__(self, fail_at: int = 0) -> None:
        self.threads: List[str] = []
        self.channels_last: List[bool] = []
        self.fail_at = fail_at

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.append(threading.current_thread().name)
        self.channels_last.append(x.is_contiguous(memory_format=torch.channels_last))
        if self.fail_at and len(self.threads) >= self.fail_at:
            raise RuntimeError("the stand-in model fails")
        return torch.nn.functional.one_hot(classes(x), 1000).float()


def classes(x: torch.Tensor) -> torch.Tensor:
    """Each sample's class: its pixels' sum, scaled, modulo 1000."""
    return (x.double().flatten(1).sum(1) * 1000).long() % 1000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sut")
    return open_dataset(generate(str(root / "set"), images=IMAGES, layout="imagefolder", size=(64, 48)))


def run(scenario: str, model: StandIn, dataset, out: Path, batch_size: int, channels_last: bool = False):
    settings = Settings(scenario, False, 0.05, None, 5000.0)
    compiled = Model(model, batch_size, torch.float32, channels_last)
    return run_scenario(
        settings, compiled, dataset, PP, Device(torch.device("cpu")), 2, str(out), lambda *a, **k: None
    )


def expected_classes(dataset) -> List[int]:
    """The stand-in's top-1 of each sample alone, in set order."""
    pixels = torch.stack([torch.from_numpy(decoded(dataset, PP, i)) for i in range(IMAGES)]).permute(
        0, 3, 1, 2
    )
    return classes(normalize(pixels, PP, torch.float32, False)).tolist()


def responses_are_the_models(section, dataset, out: Path) -> None:
    log = (out / "mlperf" / "accuracy" / logs.ACCURACY).read_text()
    hits, scored = logs.score_accuracy(log, expected_classes(dataset))
    assert scored == IMAGES and hits == IMAGES
    assert section["accuracy"]["samples"] == IMAGES


@pytest.mark.parametrize("scenario,batch_size", [("singlestream", 1), ("multistream", 4)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_a_stream_scenario_runs_each_query_on_loadgens_issue_thread(
    scenario, batch_size, channels_last, dataset, tmp_path
):
    model = StandIn()
    section = run(scenario, model, dataset, tmp_path, batch_size, channels_last)
    assert len(model.threads) > TIMED_CALLS
    assert set(model.threads) == {"MainThread"}  # LoadGen issues on the thread that started the test
    assert all(model.channels_last[TIMED_CALLS:]) == channels_last  # a sample's view keeps the layout
    assert section["performance"]["validity"] in ("VALID", "INVALID")
    responses_are_the_models(section, dataset, tmp_path)


def test_offline_batches_on_the_batching_thread_in_the_models_layout(dataset, tmp_path):
    model = StandIn()
    section = run("offline", model, dataset, tmp_path, 4, channels_last=True)
    served = model.threads[TIMED_CALLS:]  # after the main thread's timing calls
    assert served and set(served) == {"sut-batching"}
    assert all(model.channels_last)
    responses_are_the_models(section, dataset, tmp_path)


@pytest.mark.parametrize("scenario", ["singlestream", "offline"])
def test_a_failing_model_completes_every_sample_and_the_run_raises_its_error(scenario, dataset, tmp_path):
    with pytest.raises(RuntimeError, match="the stand-in model fails"):
        run(scenario, StandIn(fail_at=8), dataset, tmp_path, 2)


class HeldLoadGen:
    """LoadGen's fast-SUT calls, their completions held until ``released``: a device behind its queue. The
    model notes how many samples were complete when each batch reached it."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.released = threading.Event()
        self.completed: List[int] = []
        self.complete_at_call: List[int] = []

    def model(self, x: torch.Tensor) -> torch.Tensor:
        with self.changed:
            self.complete_at_call.append(len(self.completed))
            self.changed.notify_all()
        return torch.zeros((x.shape[0], 1000))

    def ConstructFastSUT(self, issue, flush):  # noqa: N802 - LoadGen's names
        return "handle"

    def DestroyFastSUT(self, handle) -> None:  # noqa: N802
        pass

    def QuerySampleResponse(self, sample_id: int, address: int, size: int) -> int:  # noqa: N802
        return sample_id

    def QuerySamplesComplete(self, responses: List[int]) -> None:  # noqa: N802
        assert self.released.wait(timeout=60)
        with self.changed:
            self.completed.extend(responses)
            self.changed.notify_all()


def test_a_batch_is_queued_only_once_the_one_before_the_last_is_complete(dataset):
    lg, batch_size = HeldLoadGen(), 2
    library = SampleLibrary(dataset, PP, torch.device("cpu"), torch.float32, False, 2, IMAGES)
    library.load(list(range(IMAGES)))
    sut = BatchingSut(lg, lg.model, library, batch_size, 0.0, torch.device("cpu"))
    sut.issue(list(range(IMAGES)), list(range(IMAGES)))
    with lg.changed:
        assert lg.changed.wait_for(lambda: len(lg.complete_at_call) >= IN_FLIGHT, timeout=60)
        # unbounded, the batching thread would go on to the next batch at once: it has every sample
        assert not lg.changed.wait_for(lambda: len(lg.complete_at_call) > IN_FLIGHT, timeout=0.5)
    lg.released.set()
    with lg.changed:
        assert lg.changed.wait_for(lambda: len(lg.completed) == IMAGES, timeout=60)
    sut.close()
    assert sorted(lg.completed) == list(range(IMAGES))
    assert len(lg.complete_at_call) == IMAGES // batch_size
    for call, complete in enumerate(lg.complete_at_call):  # batch k waited for batch k - IN_FLIGHT
        assert complete >= (call - IN_FLIGHT + 1) * batch_size
