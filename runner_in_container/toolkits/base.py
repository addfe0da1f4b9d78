"""The one interface every inference toolkit implements.

A toolkit turns a framework model into something callable on a device-resident
batch: ``compile(model, example)`` once, then ``fn(batch) -> logits`` per batch.
The runner times only that call (the core window); everything the toolkit does
before it (export, engine build) is reported as ``export_s`` / ``compile_s``.

The tensor a compiled callable returns may be a buffer that the next call
overwrites (preallocated engine outputs, CUDA graphs): consume it (top-k, copy)
before calling again.
"""

import abc
import os
import time
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

import torch

from ..contract import KNOB, PRECISIONS, TOOLKIT_KNOBS, TOOLKIT_PRECISIONS, switch

Forward = Callable[[torch.Tensor], torch.Tensor]


class ToolkitUnavailable(RuntimeError):
    """The toolkit's SDK is not importable in this environment (the message says why)."""


class ToolkitSettings:
    """What a toolkit needs to know about the run."""

    def __init__(
        self,
        device: torch.device,
        precision: str,
        batch_size: int,
        work_dir: str,
        cache_dir: Optional[str] = None,
        calibration: Optional[Callable[[], Iterable[torch.Tensor]]] = None,
        options: Optional[Mapping[str, str]] = None,
        onnx_path: Optional[str] = None,
        engine_path: Optional[str] = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError("precision must be one of {}, got {!r}".format(", ".join(PRECISIONS), precision))
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.work_dir = work_dir
        self.cache_dir = cache_dir or work_dir
        # For int8: yields normalized fp32 NCHW batches on the CPU, for calibration.
        self.calibration = calibration
        # Toolkit-specific knobs (e.g. {"inductor_mode": "reduce-overhead"}); see Toolkit.option().
        self.options = dict(options or {})
        # A vendor's own ONNX graph / engine file, run instead of one exported / built here (contract).
        self.onnx_path = onnx_path
        self.engine_path = engine_path


class Toolkit(abc.ABC):
    """Base class; one subclass per module in this package, found by name."""

    #: name used on the command line and in results
    name = ""
    #: precisions this toolkit can run: contract.TOOLKIT_PRECISIONS[name], set for each subclass
    precisions = ()  # type: Tuple[str, ...]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name not in TOOLKIT_PRECISIONS:
                raise TypeError("toolkit {} is not in contract.TOOLKIT_PRECISIONS".format(cls.name))
            cls.precisions = TOOLKIT_PRECISIONS[cls.name]

    def __init__(self, settings: ToolkitSettings) -> None:
        if settings.precision not in self.precisions:
            raise ValueError(
                "toolkit {} does not support precision {} (supported: {})".format(
                    self.name, settings.precision, ", ".join(self.precisions)
                )
            )
        self.settings = settings
        self.durations = {"export_s": 0.0, "compile_s": 0.0}  # type: Dict[str, float]
        self.notes = []  # type: List[str]
        self.check_settings()

    def check_settings(self) -> None:  # noqa: B027 - optional hook, no check by default
        """Raise ValueError for settings this toolkit cannot run (called by __init__)."""

    def option(self, key: str, default: Optional[str] = None) -> str:
        """A toolkit knob: ``settings.options[key]``, else env ``RN50BENCH_<KEY>``, else ``default``, else
        the knob's declared default (contract.KNOBS).

        The value is checked as the knob's declaration parses it (contract.Conflict, a ValueError
        "<key>: <what>") and recorded in ``notes``. ``key`` must be one of this toolkit's knobs in
        contract.KNOBS, which is what ``plan`` checks a cluster file's ``toolkit_options`` against.
        """
        if key not in TOOLKIT_KNOBS.get(self.name, ()):
            raise KeyError("knob %s of toolkit %s is not in contract.KNOBS" % (key, self.name))
        knob = KNOB[key]
        env = "RN50BENCH_" + key.upper()
        if key in self.settings.options:
            value, source = str(self.settings.options[key]), "settings"
        elif env in os.environ:
            value, source = os.environ[env], env
        else:
            value, source = default if default is not None else knob.default, "default"
        knob.check(value)
        self.notes.append(f"{key}={value} ({source})")
        return value

    def switch(self, key: str) -> bool:
        """An on/off knob (``option``, declared with contract.switch): whether it is on."""
        return switch(self.option(key))

    # -- what the engine consumes -------------------------------------------------
    def input_dtype(self) -> torch.dtype:
        """dtype of the batch handed to the compiled callable."""
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.settings.precision, torch.float32)

    def channels_last(self) -> bool:
        """Whether the batch should be in channels_last memory format."""
        return False

    # -- lifecycle ----------------------------------------------------------------
    @abc.abstractmethod
    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        """Build the engine from an fp32 eval-mode model on the device.

        ``example`` is a batch of the configured batch size, on the device, in
        ``input_dtype()`` and layout. Returns the callable the runner times.
        """

    def versions(self) -> Dict[str, str]:
        """Versions of the SDK pieces this toolkit used (name -> version)."""
        return {}

    # -- helpers for subclasses ---------------------------------------------------
    def timed(self, key: str, fn: Callable, *args, **kwargs):
        """Run ``fn`` and add its wall time to ``durations[key]``."""
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.durations[key] += time.perf_counter() - start
