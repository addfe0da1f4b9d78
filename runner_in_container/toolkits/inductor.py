"""torch.compile with the inductor backend (torch >= 2.0).

Knobs (``Toolkit.option``): ``inductor_mode`` (default "reduce-overhead" on CUDA:
CUDA graphs, so each call's output is overwritten by the next call; measured on the
H200 at least as fast as "max-autotune-no-cudagraphs" with 18 s instead of ~5 min of
compile; "default" on the CPU), ``inductor_freezing`` ("1"/"0", default
"1": inlines the weights as constants and folds BatchNorm into the convolutions,
where this torch has ``torch._inductor.config.freezing``), and two switches, off
by default: ``inductor_conv_1x1_as_mm`` (1x1 convolutions, two of three in
ResNet50's bottlenecks, as matmuls with fused epilogues) and
``inductor_cudnn_benchmark`` (cuDNN times its algorithms for the convolutions left
to it; the shapes are fixed here; process-wide). The H200 bench did not show them
paying (bench/h200_bench.py at commit c5c477d, fp16 bs 256: p_core 29,442 img/s with both, 31,255
without). channels_last on CUDA.
The first call, which compiles (and autotunes), is made inside ``compile()`` and
counted in ``compile_s``.
"""

from typing import Dict

import torch

from .base import Forward, Toolkit, ToolkitUnavailable
from .precision import prepare_model, tf32_flags
from .pytorch import torch_versions


class Inductor(Toolkit):
    name = "inductor"

    def channels_last(self) -> bool:
        return self.settings.device.type == "cuda"

    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        if not hasattr(torch, "compile"):
            raise ToolkitUnavailable(f"torch {torch.__version__} has no torch.compile (needs torch >= 2.0)")
        cuda = self.settings.device.type == "cuda"
        mode = self.option("inductor_mode", "reduce-overhead" if cuda else "default")
        self._set_inductor_config("freezing", self.switch("inductor_freezing"))
        self._set_inductor_config("conv_1x1_as_mm", self.switch("inductor_conv_1x1_as_mm"))
        if self.switch("inductor_cudnn_benchmark") and cuda:
            torch.backends.cudnn.benchmark = True
            self.notes.append("torch.backends.cudnn.benchmark=True (process-wide)")
        prepared = self.timed(
            "compile_s", prepare_model, model, self.settings.precision, self.settings.device, cuda
        )
        self.notes.append(f"tf32 flags: {tf32_flags()}")
        compiled = torch.compile(prepared, mode=mode, dynamic=False)
        mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
        new_step = mark_step if (mode == "reduce-overhead" and mark_step is not None) else None

        def forward(batch: torch.Tensor) -> torch.Tensor:
            # freezing applies only to graphs compiled with grad disabled
            with torch.no_grad():
                if new_step is not None:
                    new_step()
                return compiled(batch)

        def first_call() -> None:
            forward(example)
            if cuda:
                torch.cuda.synchronize(self.settings.device)

        self.timed("compile_s", first_call)
        return forward

    def _set_inductor_config(self, name: str, enabled: bool) -> None:
        import torch._inductor.config as inductor_config

        if hasattr(inductor_config, name):
            setattr(inductor_config, name, enabled)
            self.notes.append(f"torch._inductor.config.{name}={enabled}")
        elif enabled:
            self.notes.append(f"this torch has no torch._inductor.config.{name}: not applied")

    def versions(self) -> Dict[str, str]:
        versions = torch_versions()
        try:
            import triton

            versions["triton"] = str(triton.__version__)
        except ImportError:
            pass
        return versions


TOOLKIT = Inductor
