"""Tencent Zixiao zxrt 2.4.12: ONNX -> executable with the ``TopsInference`` Python API.

NOT EXECUTED in this project's CI or on the team's H200: no Zixiao device or zxrt
there. zxrt's Python API is not publicly documented; this follows FlagPerf's adapter
(FlagOpen/FlagPerf ``inference/inference_engine/zixiao/zxrt.py``), which imports the
runtime as ``TopsInference``: ``set_device(card, -1)``, ``create_parser(ONNX_MODEL)`` with
``set_input_names`` / ``set_input_dtypes`` / ``set_input_shapes``, ``read``,
``create_optimizer()`` (``set_build_flag(KFP16_MIX)`` for fp16, inputs then DT_FLOAT16),
``build``, ``save_executable``, ``TopsInference.load``. Inference uses the synchronous
``engine.run([array], outputs, TIF_ENGINE_RSC_IN_HOST_OUT_HOST)`` of the public
TopsInference samples instead of FlagPerf's six asynchronous ``runV2`` sub-batches
(one per compute cluster), so one call is one whole batch; its time includes the
host->device and device->host copies. Executables are cached by
``engine_cache.engine_key`` with the constant device "zixiao" (no device-model query is
known in this API; use one cache_dir per card model); option ``zxrt_card`` (default "0").
"""

from typing import Callable, Dict, Tuple

import torch

from .base import Forward, Toolkit
from .engine_cache import engine_file, engine_key
from .hostio import to_numpy, to_torch
from .onnx_export import INPUT_NAME, export_for
from .sdk import import_sdk, sdk_version


class Zxrt(Toolkit):
    name = "zxrt"

    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        tops = import_sdk("TopsInference")
        version = sdk_version(tops)
        card = int(self.option("zxrt_card"))
        fp16 = self.settings.precision == "fp16"

        def prepare() -> Tuple[str, Callable[[str], None]]:
            # the ONNX graph stays fp32; zxrt builds the fp16 executable from it (KFP16_MIX)
            onnx_path, onnx_sha = export_for(self, model, example.float())
            key = engine_key(onnx_sha, "zxrt", version, "zixiao", self.settings.precision, example.shape[0])

            def build(tmp_path: str) -> None:
                parser = tops.create_parser(tops.ONNX_MODEL)
                parser.set_input_names([INPUT_NAME])
                parser.set_input_dtypes([tops.DT_FLOAT16 if fp16 else tops.DT_FLOAT32])
                parser.set_input_shapes(list(example.shape))
                network = parser.read(onnx_path)
                optimizer = tops.create_optimizer()
                if fp16:
                    optimizer.set_build_flag(tops.KFP16_MIX)
                optimizer.build(network).save_executable(tmp_path)

            return key, build

        self._handler = tops.set_device(card, -1)  # kept: the device stays selected while it lives
        engine = self.timed("compile_s", tops.load, engine_file(self, ".zxrt", prepare, "executable"))
        device = self.settings.device
        where = tops.TIF_ENGINE_RSC_IN_HOST_OUT_HOST

        def forward(batch: torch.Tensor) -> torch.Tensor:
            outputs = []  # type: list
            engine.run([to_numpy(batch)], outputs, where)
            return to_torch(outputs[0], device)

        return forward

    def versions(self) -> Dict[str, str]:
        return {"zxrt": sdk_version(import_sdk("TopsInference"))}


TOOLKIT = Zxrt
