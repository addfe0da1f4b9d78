"""TensorRT: ONNX -> engine with the TensorRT Python builder API, run on torch's CUDA stream.

NOT EXECUTED in this project's CI or on the team's H200: no TensorRT there (PyPI has
no binary TensorRT wheel this workplace can install). Written against NVIDIA's
documented Python API; what is tested is everything around it (ONNX export, cache
key, version dispatch, calibration batching, the import guard).

Two API generations, chosen by the installed version (``binding_api``):

* TensorRT 8.x (the reference image has 8.5.1.7): ``create_network`` needs the
  EXPLICIT_BATCH flag; inference through ``execute_async_v2(bindings, stream_handle)``
  with a device pointer per binding index. Reference: TensorRT 8.5 Python API,
  https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-852/api/python_api/
* TensorRT 10.x: explicit batch is the only mode (no flag); the binding API is
  removed, tensors are addressed by name: ``set_tensor_address`` + ``execute_async_v3``.
  Reference: TensorRT 8.x -> 10.x migration guide,
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration-guide.html

Both build with ``build_serialized_network`` (8.0+) and set the workspace with
``set_memory_pool_limit`` (8.4+) or ``max_workspace_size`` (older). Precisions:
fp32 (BuilderFlag.TF32 cleared), tf32 (set), fp16 (BuilderFlag.FP16, network input
in half), int8 (BuilderFlag.INT8 with an IInt8EntropyCalibrator2 fed from
``settings.calibration``, calibration cache next to the engine; layers TensorRT
cannot run in int8 fall back to fp32, TF32 off). Engines are cached in ``cache_dir``
keyed by ``engine_cache.engine_key``. The output is a preallocated torch tensor
that each call overwrites.
"""

import os
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch

from .base import Forward, Toolkit
from .engine_cache import cuda_device_label, engine_file, engine_key, write_bytes_atomic
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_for
from .sdk import import_sdk, major_version, sdk_version

WORKSPACE_BYTES = 4 << 30


def binding_api(version: str) -> bool:
    """True for TensorRT < 10 (binding-index API, EXPLICIT_BATCH flag), False for 10.x (name API)."""
    return major_version(version) < 10


class CalibrationFeeder:
    """Cuts a stream of calibration batches into batches of exactly ``batch_size`` in one buffer.

    ``next_batch()`` fills the device buffer and returns it, or None once fewer than
    ``batch_size`` images are left (those are counted in ``dropped``, never padded).
    """

    def __init__(
        self,
        batches: Callable[[], Iterable[torch.Tensor]],
        batch_size: int,
        image_shape: Tuple[int, ...],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.batch_size = batch_size
        self.buffer = torch.empty((batch_size,) + tuple(image_shape), dtype=dtype, device=device)
        self.fed = 0
        self.dropped = 0
        self._source = batches
        self._images = None  # type: Optional[Iterator[torch.Tensor]]

    def _stream(self) -> Iterator[torch.Tensor]:
        for batch in self._source():
            if tuple(batch.shape[1:]) != tuple(self.buffer.shape[1:]):
                got, want = tuple(batch.shape), tuple(self.buffer.shape)
                raise ValueError(f"calibration batch has shape {got}, the engine takes {want}")
            for index in range(batch.shape[0]):
                yield batch[index]

    def next_batch(self) -> Optional[torch.Tensor]:
        if self._images is None:
            self._images = self._stream()
        count = 0
        for image in self._images:
            self.buffer[count].copy_(image)
            count += 1
            if count == self.batch_size:
                break
        if count < self.batch_size:
            self.dropped += count
            return None
        if self.buffer.is_cuda:
            torch.cuda.synchronize(self.buffer.device)
        self.fed += count
        return self.buffer


def _calibrator(trt, feeder: CalibrationFeeder, cache_path: str):
    """An IInt8EntropyCalibrator2 over ``feeder`` with its table cached at ``cache_path``."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return feeder.batch_size

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            batch = feeder.next_batch()
            return None if batch is None else [int(batch.data_ptr())]

        def read_calibration_cache(self) -> Optional[bytes]:
            if os.path.isfile(cache_path):
                with open(cache_path, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache) -> None:
            write_bytes_atomic(cache_path, bytes(cache))

    return Calibrator()


class TensorRT(Toolkit):
    name = "tensorrt"

    def check_settings(self) -> None:
        if self.settings.device.type != "cuda":
            raise ValueError(f"tensorrt needs a CUDA device, got {self.settings.device}")

    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        trt = import_sdk("tensorrt")
        version = sdk_version(trt)
        device = example.device
        index = device.index if device.index is not None else torch.cuda.current_device()
        logger = trt.Logger(trt.Logger.WARNING)

        def prepare() -> Tuple[str, Callable[[str], None]]:
            # export in fp32: TensorRT chooses the precision; for fp16 only the network input is half
            onnx_path, onnx_sha = export_for(self, model, example.float())
            precision, batch = self.settings.precision, example.shape[0]
            key = engine_key(onnx_sha, "tensorrt", version, cuda_device_label(index), precision, batch)
            calibration_cache = os.path.join(self.settings.cache_dir, key + ".calib")

            def build(tmp_path: str) -> None:
                blob = self._build(trt, logger, onnx_path, tuple(example.shape), device, calibration_cache)
                write_bytes_atomic(tmp_path, blob)

            return key, build

        engine_path = engine_file(self, ".engine", prepare)

        def load() -> Forward:
            with open(engine_path, "rb") as handle:
                engine = trt.Runtime(logger).deserialize_cuda_engine(handle.read())
            if engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {engine_path}")
            return self._runner(trt, engine, version, device)

        return self.timed("compile_s", load)

    def _build(self, trt, logger, onnx_path: str, shape: Tuple[int, ...], device, calib_path: str) -> bytes:
        version = sdk_version(trt)
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if binding_api(version) else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        with open(onnx_path, "rb") as handle:
            if not parser.parse(handle.read()):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        if hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        else:
            config.max_workspace_size = WORKSPACE_BYTES
        precision = self.settings.precision
        if precision == "tf32":
            config.set_flag(trt.BuilderFlag.TF32)
        else:
            config.clear_flag(trt.BuilderFlag.TF32)
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
            network.get_input(0).dtype = trt.DataType.HALF
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = self._int8_calibrator(trt, shape, device, calib_path)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT engine build failed for {onnx_path} (see the TensorRT log above)")
        return bytes(serialized)

    def _int8_calibrator(self, trt, shape: Tuple[int, ...], device, calib_path: str):
        if self.settings.calibration is None and not os.path.isfile(calib_path):
            raise ValueError(f"tensorrt int8 needs calibration data (settings.calibration) or {calib_path}")
        feeder = CalibrationFeeder(self.settings.calibration or (lambda: []), shape[0], shape[1:], device)
        self.notes.append(f"int8 calibration cache: {calib_path}")
        return _calibrator(trt, feeder, calib_path)

    def _runner(self, trt, engine, version: str, device: torch.device) -> Forward:
        to_torch = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        context = engine.create_execution_context()
        if binding_api(version):
            # TensorRT 8.x: binding indices, execute_async_v2
            in_index = engine.get_binding_index(INPUT_NAME)
            out_index = engine.get_binding_index(OUTPUT_NAME)
            out_shape = tuple(engine.get_binding_shape(out_index))
            out_dtype = to_torch[engine.get_binding_dtype(out_index)]
            output = torch.empty(out_shape, dtype=out_dtype, device=device)
            bindings = [0] * engine.num_bindings
            bindings[out_index] = output.data_ptr()

            def forward(batch: torch.Tensor) -> torch.Tensor:
                bindings[in_index] = batch.contiguous().data_ptr()
                stream = torch.cuda.current_stream(device).cuda_stream
                if not context.execute_async_v2(bindings=bindings, stream_handle=stream):
                    raise RuntimeError("TensorRT execute_async_v2 failed")
                return output

            return forward
        # TensorRT 10.x: tensors by name, set_tensor_address + execute_async_v3
        out_shape = tuple(engine.get_tensor_shape(OUTPUT_NAME))
        output = torch.empty(out_shape, dtype=to_torch[engine.get_tensor_dtype(OUTPUT_NAME)], device=device)
        context.set_tensor_address(OUTPUT_NAME, output.data_ptr())

        def forward_v3(batch: torch.Tensor) -> torch.Tensor:
            context.set_tensor_address(INPUT_NAME, batch.contiguous().data_ptr())
            if not context.execute_async_v3(torch.cuda.current_stream(device).cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            return output

        return forward_v3

    def versions(self) -> Dict[str, str]:
        return {"tensorrt": sdk_version(import_sdk("tensorrt"))}


TOOLKIT = TensorRT
