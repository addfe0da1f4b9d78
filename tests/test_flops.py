"""FLOP counting from the model (metrics.md: conv + linear, a multiply-add is 2 FLOPs)."""

import torch

from runner_in_container.cases import discover
from runner_in_container.flops import count_flops


def test_resnet50_is_8_18_gflop():
    model = discover()["resnet50"].architecture().eval()
    flops, method = count_flops(model)
    assert 8.17e9 < flops < 8.19e9
    assert "2 FLOPs per multiply-add" in method and "1x3x224x224" in method
    assert "meta device" in method  # shapes only: no image computed


def test_a_model_without_meta_kernels_is_counted_on_the_cpu():
    class CpuOnly(torch.nn.Module):  # an operator this torch cannot run on the meta device
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, kernel_size=1, bias=False)

        def forward(self, x):
            if x.is_meta:
                raise NotImplementedError("no meta kernel")
            return self.conv(x)

    model = CpuOnly().eval()
    flops, method = count_flops(model, size=4)
    assert flops == 2 * (2 * 4 * 4) * 3 and "on the CPU" in method
    assert next(model.parameters()).device.type == "cpu"  # the model itself stays where it was


def test_grouped_conv_and_linear_counted_by_hand():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, kernel_size=1, bias=False),  # out 4x8x8, 3 inputs each
        torch.nn.Conv2d(4, 8, kernel_size=3, stride=2, padding=1, groups=2),  # out 8x4x4, 2x3x3 inputs each
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),  # bias add not counted
    ).eval()
    expected = 2 * (4 * 8 * 8) * 3 + 2 * (8 * 4 * 4) * (2 * 3 * 3) + 2 * 10 * 8
    assert count_flops(model, size=8)[0] == expected
    # the hooks are removed afterwards: counting again gives the same figure, not double
    assert count_flops(model, size=8)[0] == expected
    assert not any(m._forward_hooks for m in model.modules())
