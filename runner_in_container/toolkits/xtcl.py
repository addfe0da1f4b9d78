"""Kunlunxin XTCL 2.1 (TVM-based): ONNX -> relay -> build for the XPU -> graph executor.

NOT EXECUTED in this project's CI or on the team's H200: no Kunlunxin device or XTCL
there. XTCL's Python API is not publicly documented beyond TVM's; this follows
FlagPerf's adapter (FlagOpen/FlagPerf ``inference/inference_engine/kunlunxin/xtcl.py``,
the graph-executor variant): ``relay.frontend.from_onnx(model, {name: shape})``, under
``tvm.transform.PassContext(opt_level=3, config=...)`` ``relay.build(mod,
target="xpu -libs=xdnn -split-device-funcs -device-type=<xpu2>", params=params)``, then
``graph_executor.create(graph, lib, tvm.device("xpu", 0))``, ``set_input`` / ``run`` /
``get_output``. fp16 uses ``tvm.contrib.xpu_config.XPUOutDtypeConfig(default_precision=
"float16", config_last_node=True, config_map={}, config_var_dtype_map={"input":
"float16"})`` as FlagPerf does.

Unlike FlagPerf, fp32 does not set XTCL_USE_FP16 / XTCL_QUANTIZE_WEIGHT (that made its
"fp32" row run in reduced precision); if they are set in the environment, fp32 is
refused. XTCL_* variables present are recorded in ``notes``. The runtime takes host
arrays: the callable copies the batch to the XPU and the logits back, so its time
includes both copies. Option ``xtcl_device_type`` (default "xpu2", the R200).
"""

import os
from typing import Dict

import torch

from .base import Forward, Toolkit
from .hostio import to_numpy, to_torch
from .onnx_export import INPUT_NAME, export_for
from .sdk import import_sdk, sdk_version

REDUCED_PRECISION_ENV = ("XTCL_USE_FP16", "XTCL_QUANTIZE_WEIGHT")


def xtcl_env() -> Dict[str, str]:
    """The XTCL_* environment variables in effect."""
    return {k: v for k, v in os.environ.items() if k.startswith("XTCL_")}


class Xtcl(Toolkit):
    name = "xtcl"

    def check_settings(self) -> None:
        if self.settings.precision == "fp32":
            lying = [k for k in REDUCED_PRECISION_ENV if os.environ.get(k, "0") not in ("", "0")]
            if lying:
                raise ValueError(
                    "xtcl fp32 refused: {} set in the environment lowers the precision".format(
                        ", ".join(lying)
                    )
                )

    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        tvm = import_sdk("tvm")
        onnx = import_sdk("onnx")
        relay = import_sdk("tvm.relay")
        graph_executor = import_sdk("tvm.contrib.graph_executor")
        # the ONNX graph stays fp32; XTCL lowers it to fp16 through its build config
        onnx_path, _ = export_for(self, model, example.float())
        device_type = self.option("xtcl_device_type")
        target = f"xpu -libs=xdnn -split-device-funcs -device-type={device_type}"
        build_config = {}
        if self.settings.precision == "fp16":
            xpu_config = import_sdk("tvm.contrib.xpu_config")
            build_config["XPUOutDtypeConfig"] = xpu_config.XPUOutDtypeConfig(
                default_precision="float16",
                config_last_node=True,
                config_map={},
                config_var_dtype_map={INPUT_NAME: "float16"},
            ).value()
        os.environ.setdefault("XTCL_USE_NEW_ALTER_PASS", "1")  # FlagPerf sets it for both precisions
        self.notes.append(f"xtcl target {target!r}, env {xtcl_env()}")

        def build():
            mod, params = relay.frontend.from_onnx(onnx.load(onnx_path), {INPUT_NAME: list(example.shape)})
            with tvm.transform.PassContext(opt_level=3, config=build_config):
                graph, lib, params = relay.build(mod, target=target, params=params)
            executor = graph_executor.create(graph, lib, tvm.device("xpu", 0))
            executor.set_input(**params)
            return executor

        executor = self.timed("compile_s", build)
        device = self.settings.device

        def forward(batch: torch.Tensor) -> torch.Tensor:
            executor.set_input(INPUT_NAME, to_numpy(batch))
            executor.run()
            output = executor.get_output(0)
            return to_torch(output.numpy() if hasattr(output, "numpy") else output.asnumpy(), device)

        return forward

    def versions(self) -> Dict[str, str]:
        return {"tvm": sdk_version(import_sdk("tvm"))}


TOOLKIT = Xtcl
