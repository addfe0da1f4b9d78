"""The core pass (metrics.md version 2) on CPU tensors: the batches it holds and the calls it times."""

import torch

from runner_in_container import core_pass
from runner_in_container.device import open_device


def test_held_inputs_are_the_first_batches_within_their_bounds():
    batches = [torch.full((10,), float(i)) for i in range(5)]  # 40 bytes each
    held = core_pass.HeldInputs(batches=3, max_bytes=100)
    for x in batches:
        held.offer(x)
    assert held.inputs == batches[:2] and held.bytes == 80  # a third would pass 100 bytes
    held = core_pass.HeldInputs(batches=3, max_bytes=10_000)
    for x in batches:
        held.offer(x)
    assert held.inputs == batches[:3]  # at most 3 batches
    one = core_pass.HeldInputs(batches=3, max_bytes=1)
    one.offer(batches[4])
    assert one.inputs == [batches[4]]  # one at least, whatever its size


def test_the_core_pass_cycles_over_the_held_batches_and_times_each_call():
    held = core_pass.HeldInputs()
    for i in range(3):
        held.offer(torch.full((4,), float(i)))
    seen = []
    times, wall = core_pass.core_pass(
        lambda x: seen.append(int(x[0])), held, 7, open_device(torch.device("cpu"))
    )
    assert seen == [0, 1, 2, 0, 1, 2, 0]
    assert len(times) == 7 and all(t >= 0 for t in times) and wall >= sum(times)
