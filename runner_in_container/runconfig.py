"""The run's Config: everything one run needs, checked and set up by the CLI (``cli.set_up``), read by the
run (``run.py``, ``stage.py``) and the result document (``result.py``)."""

from typing import Any, Dict, NamedTuple, Optional

from .cases import Case, Weights
from .data import Dataset
from .data.decoder_choice import Decoder
from .data.spawned import Spawned
from .device import Device
from .mlperf.settings import Settings as MlperfSettings
from .toolkits.base import Toolkit


class Config(NamedTuple):
    """Everything a run needs, checked by the CLI."""

    case: Case
    dataset: Dataset
    weights: Weights
    val_toolkit: Optional[Toolkit]  # None: no val stage (--stages infer)
    infer_toolkit: Toolkit
    calibration: Optional[Dict[str, Any]]  # what int8 calibration reads, for the result
    precision: str
    batch_size: int
    repeat: int
    dev: Device  # opened, its memory baseline taken
    decoder: Decoder  # PIL threads or the device decoder (data/decoder_choice.py)
    spawned: Optional[Spawned]  # decoding processes spawned ahead for the loader
    workers: int
    warmup: int
    out: str
    work_dir: str  # scratch for exports and engines (toolkit settings point below it), removed at the end
    engine_cache: Optional[str]
    peak_flops: Optional[float]
    peak_source: Optional[str]
    max_images: Optional[int]
    mlperf: Optional[MlperfSettings]  # a LoadGen scenario's settings; None: flagperf
    args: Dict[str, Any]
    #: the vendor's own files the infer toolkit runs ("onnx", "engine" -> path and sha256; None: made here)
    artefacts: Dict[str, Optional[Dict[str, str]]]
