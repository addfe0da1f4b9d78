"""Iluvatar IXRT 0.4.0: ONNX -> IXRT engine, run on the Iluvatar GPU through corex torch tensors.

NOT EXECUTED in this project's CI or on the team's H200: no Iluvatar device or IXRT
there. IXRT's Python API is not publicly documented; this follows FlagPerf's adapter
(FlagOpen/FlagPerf ``inference/inference_engine/iluvatar/ixrt.py`` and
``inference/configs/resnet50/vendor_config/iluvatar_configurations.yaml``), the run
behind the reference table's "ixrt fp16 (W16A32)" row: ``RuntimeConfig`` with the
input shape, ``RuntimeContext("float16", "nhwc", use_gpu=True, pipeline_sync=True,
input_types={"input": "float32"}, output_types={...: "float32"}, input_device="gpu",
output_device="gpu")``, ``IxRT.from_onnx`` -> ``BuildEngine`` -> ``SerializeEngine``, then
``IxRT().LoadEngine(path, batch)``, ``BindIOBuffers`` / ``LoadInput`` / ``Execute``.

Differences from FlagPerf: the engine is built with the API (no ``ixrtexec`` shell
string, no ``sleep 10``), cached by ``engine_cache.engine_key``, and the callable
waits for torch's stream before handing the batch over (IXRT runs on its own stream).
Only fp16 as FlagPerf ran it: weights fp16, input and output fp32 (W16A32).
"""

from typing import Callable, Dict, Tuple

import torch

from .base import Forward, Toolkit
from .engine_cache import cuda_device_label, engine_file, engine_key
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_for
from .sdk import import_sdk, sdk_version

IO_TYPES = {"input_types": {INPUT_NAME: "float32"}, "output_types": {OUTPUT_NAME: "float32"}}


class Ixrt(Toolkit):
    name = "ixrt"

    def input_dtype(self) -> torch.dtype:
        return torch.float32  # W16A32: activations enter and leave in fp32

    def check_settings(self) -> None:
        if self.settings.device.type != "cuda":
            raise ValueError(f"ixrt runs on the Iluvatar GPU (torch device cuda), got {self.settings.device}")

    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        ixrt = import_sdk("ixrt")
        version = sdk_version(ixrt)
        device = example.device
        index = device.index if device.index is not None else torch.cuda.current_device()
        batch = int(example.shape[0])

        def prepare() -> Tuple[str, Callable[[str], None]]:
            onnx_path, onnx_sha = export_for(self, model, example)
            key = engine_key(onnx_sha, "ixrt", version, cuda_device_label(index), "fp16-w16a32", batch)

            def build(tmp_path: str) -> None:
                config = ixrt.RuntimeConfig()
                config.input_shapes = [(INPUT_NAME, list(example.shape))]
                config.device_idx = index
                config.runtime_context = ixrt.RuntimeContext(
                    "float16",
                    "nhwc",
                    use_gpu=True,
                    pipeline_sync=True,
                    input_device="gpu",
                    output_device="gpu",
                    **IO_TYPES,
                )
                builder = ixrt.IxRT.from_onnx(onnx_path, None, config)
                builder.BuildEngine()
                builder.SerializeEngine(tmp_path)

            return key, build

        engine_path = engine_file(self, ".ixrt", prepare)

        def load() -> Forward:
            runtime = ixrt.IxRT()
            runtime.LoadEngine(engine_path, batch)
            return self._runner(runtime, device)

        return self.timed("compile_s", load)

    def _runner(self, runtime, device: torch.device) -> Forward:
        out_shape = runtime.GetOutputShape()[OUTPUT_NAME]
        output = torch.empty(tuple(out_shape.dims), dtype=torch.float32, device=device)
        outputs = [[OUTPUT_NAME, output, out_shape]]
        in_shape = runtime.GetInputShape()[INPUT_NAME]

        def forward(batch: torch.Tensor) -> torch.Tensor:
            batch = batch.contiguous()
            torch.cuda.current_stream(device).synchronize()
            runtime.BindIOBuffers(outputs)
            runtime.LoadInput([[INPUT_NAME, batch, in_shape]])
            runtime.Execute()  # pipeline_sync=True: returns when the output is written
            return output

        return forward

    def versions(self) -> Dict[str, str]:
        return {"ixrt": sdk_version(import_sdk("ixrt"))}


TOOLKIT = Ixrt
