"""The result document's shape, declared once: stdlib dataclasses for every key of docs/result_schema.md,
each with its type and its physical bounds, and ``parse``, the one validation of a whole document.

The runner writes the document (``result.py``); the orchestrator reads every fetched and every stored result
through ``parse`` (orchestrator/job/collect.py). A document passes only when every key is declared here and
has its declared type, every figure is finite, within its bounds (a throughput above 0 and below a ceiling, a
percentage within 0..100, a count a whole number >= 0, a time >= 0) and never a vanishing magnitude such as
5e-324, every text and list is bounded in length, and a result with figures (status ok or failed_accuracy)
carries all of them. Anything else is ``Invalid``: one line naming the key and its value, shown bounded and
escaped. ``parse_as`` reads any document declared the same way (the orchestrator's stored derived figures).

Standard library only, Python 3.8: the orchestrator imports it without torch.
"""

import math
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from . import protocol
from .contract import LOADGEN_SCENARIOS, STAGE_CHOICES

if TYPE_CHECKING:
    from _typeshed import DataclassInstance  # the checker's name for any dataclass; no module at run time

#: a text field's default bound in characters, and the longer bound of messages and tracebacks
TEXT_MAX = 4096
LONG_TEXT_MAX = 65536
#: items in a list or a map unless the field says otherwise
ITEMS_MAX = 1024
#: a nonzero figure of smaller magnitude is no measurement (a subnormal such as 5e-324)
MIN_MAGNITUDE = 1e-9
#: ceilings: no run counts more images, takes longer, or goes faster than this
MAX_COUNT = 10**12
MAX_SECONDS = 1e7  # about 116 days
MAX_IMG_PER_S = 1e9
MAX_GIB = 1e6
MAX_FLOPS_PER_IMAGE = 1e15
MAX_FLOPS_PER_S = 1e21
MAX_UNIX = 1e10  # the year 2286
MAX_RATIO = 1e6
#: LoadGen's verdict on a performance run
MLPERF_VALIDITY = ("VALID", "INVALID")

_T = TypeVar("_T", bound="DataclassInstance")


class Invalid(ValueError):
    """The document breaks its schema: one line naming the key and its value."""

    def __init__(self, path: Sequence[str], value: Any, what: str) -> None:
        self.keys = tuple(path)
        self.path = ".".join(path) or "(top level)"
        super().__init__("%s = %s: %s" % (self.path, shown(value), what))


def shown(value: Any, limit: int = 60) -> str:
    """``value`` for a one-line message: a scalar in Python's ``ascii`` notation (escaped, quoted), cut at
    ``limit`` characters; a list or an object by its size only."""
    if isinstance(value, dict):
        return "an object of %d keys" % len(value)
    if isinstance(value, list):
        return "a list of %d items" % len(value)
    text = ascii(value[: limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class Rule:
    """What a field accepts beyond its type: one of ``choices`` when given, else numbers within [low, high]
    (``low`` excluded when ``above_low``; ``unit`` names them in messages) and texts of at most ``max_len``
    characters; a list or a map holds at most ``max_items`` items, each under the same rule."""

    low: float = 0.0
    high: float = 0.0
    above_low: bool = False
    unit: str = ""
    max_len: int = TEXT_MAX
    max_items: int = ITEMS_MAX
    choices: Tuple[Any, ...] = ()


#: a field in every document (docs/result_schema.md's "present"); the others, "cpu" and "cuda" (only on that
#: device) and "optional" (a field older documents lack), read as None where they are missing
PRESENT_ALWAYS = "always"


def _field(rule: Rule, present: str) -> Any:
    """A dataclass field with ``rule``, always present, or ``present`` only on that device ("cpu", "cuda")
    or "optional"."""
    if present == PRESENT_ALWAYS:
        return field(metadata={"rule": rule, "present": present})
    return field(default=None, metadata={"rule": rule, "present": present})


def counted(high: float = MAX_COUNT, low: float = 0, present: str = PRESENT_ALWAYS) -> Any:
    """A whole number within [low, high]: images, batches, threads."""
    return _field(Rule(low, high), present)


def seconds(present: str = PRESENT_ALWAYS) -> Any:
    return _field(Rule(0, MAX_SECONDS, unit="s"), present)


def millis() -> Any:
    return _field(Rule(0, MAX_SECONDS * 1000, unit="ms"), PRESENT_ALWAYS)


def unix_time() -> Any:
    return _field(Rule(0, MAX_UNIX, unit="s since the epoch"), PRESENT_ALWAYS)


def img_per_s(present: str = PRESENT_ALWAYS) -> Any:
    return _field(Rule(0, MAX_IMG_PER_S, above_low=True, unit="img/s"), present)


def qps(present: str = PRESENT_ALWAYS) -> Any:
    """Queries per second (LoadGen's Server target)."""
    return _field(Rule(0, MAX_IMG_PER_S, above_low=True, unit="QPS"), present)


def percent() -> Any:
    return _field(Rule(0, 100, unit="%"), PRESENT_ALWAYS)


def fraction() -> Any:
    return _field(Rule(0, 1), PRESENT_ALWAYS)


def ratio(present: str = PRESENT_ALWAYS) -> Any:
    return _field(Rule(0, MAX_RATIO), present)


def gib(present: str = PRESENT_ALWAYS) -> Any:
    return _field(Rule(0, MAX_GIB, unit="GiB"), present)


def flops_per_image() -> Any:
    return _field(Rule(0, MAX_FLOPS_PER_IMAGE, above_low=True, unit="FLOP"), PRESENT_ALWAYS)


def flops_per_s() -> Any:
    return _field(Rule(0, MAX_FLOPS_PER_S, above_low=True, unit="FLOP/s"), PRESENT_ALWAYS)


def pixels() -> Any:
    return _field(Rule(1, 1 << 16, unit="px"), PRESENT_ALWAYS)


def text(max_len: int = TEXT_MAX, choices: Tuple[Any, ...] = (), present: str = PRESENT_ALWAYS) -> Any:
    return _field(Rule(max_len=max_len, choices=choices), present)


def metric_version(present: str = PRESENT_ALWAYS) -> Any:
    """2 up to this runner's version, or "metrics.md/1" as version 1 wrote it (stored results of every
    version are read back)."""
    versions = tuple(range(2, protocol.METRIC_VERSION + 1))
    return text(choices=versions + ("metrics.md/1",), present=present)


def items(
    max_items: int = ITEMS_MAX, low: float = 0, high: float = 0, unit: str = "", present: str = PRESENT_ALWAYS
) -> Any:
    """A list or a map of at most ``max_items`` items (texts, or numbers within [low, high])."""
    return _field(Rule(low, high, unit=unit, max_items=max_items), present)


def flag() -> Any:
    return _field(Rule(), PRESENT_ALWAYS)


def section(present: str = PRESENT_ALWAYS) -> Any:
    """A nested object (its own dataclass): its fields carry the rules."""
    return _field(Rule(), present)


@dataclass(frozen=True)
class Error:
    stage: str = text()
    step: Optional[str] = text()
    type: str = text()
    message: str = text(LONG_TEXT_MAX)
    traceback: str = text(LONG_TEXT_MAX)


@dataclass(frozen=True)
class Config:
    argv: List[str] = items()
    case: str = text()
    data: str = text()
    labels: Optional[str] = text()
    layout: str = text()
    data_md5: Optional[str] = text()
    max_images: Optional[int] = counted()
    weights: str = text()
    toolkit: str = text()
    toolkit_option: Dict[str, str] = items()
    precision: str = text()
    batch_size: int = counted(low=1)
    repeat: int = counted(low=1)
    device: str = text()
    workers: int = counted()
    decoder: str = text()
    decode_processes: int = counted()
    warmup: int = counted()
    out: str = text()
    engine_cache: Optional[str] = text()
    peak_flops: Optional[float] = flops_per_s()
    peak_source: Optional[str] = text()
    weights_sha256: Optional[str] = text(present="optional")
    onnx_path: Optional[str] = text(present="optional")
    engine_path: Optional[str] = text(present="optional")
    stages: Optional[str] = text(choices=STAGE_CHOICES, present="optional")
    scenario: Optional[str] = text(present="optional")  # the LoadGen options: results before them lack them
    mlperf: Optional[str] = text(present="optional")
    mlperf_duration_s: Optional[float] = _field(Rule(0, MAX_SECONDS, above_low=True, unit="s"), "optional")
    server_target_qps: Optional[float] = qps(present="optional")
    server_latency_ms: Optional[float] = _field(
        Rule(0, MAX_SECONDS * 1000, above_low=True, unit="ms"), "optional"
    )


@dataclass(frozen=True)
class Preprocessing:
    resize: int = pixels()
    crop: int = pixels()
    mean: List[float] = items(8, 0, 1)
    std: List[float] = items(8, 0, 1)


@dataclass(frozen=True)
class Data:
    root: str = text()
    layout: str = text()
    n_images: int = counted()
    max_images: Optional[int] = counted()
    labels_source: str = text()
    md5: Optional[str] = text()
    decoder: str = text()
    resize: str = text()
    decoder_fallback_reason: Optional[str] = text()
    decode_processes: int = counted()
    cpu_fallback_images: Optional[int] = counted()
    cpu_fallback_reasons: Optional[Dict[str, int]] = items(ITEMS_MAX, 0, MAX_COUNT, "images")
    preprocessing: Preprocessing = section()
    decoded_image_cache: bool = flag()
    workers: int = counted()
    #: when the decoding processes were spawned and the slowest ended each phase of its start, seconds after
    #: the runner started (decode_procs.START_PHASES); absent without decoding processes
    decode_start_s: Optional[Dict[str, float]] = items(8, 0, MAX_SECONDS, "s", present="optional")


@dataclass(frozen=True)
class Weights:
    spec: str = text()
    path: Optional[str] = text()
    sha256: Optional[str] = text()
    name_sha256_prefix: Optional[str] = text()
    verified: bool = flag()
    reference: Optional[str] = text()
    seed: Optional[int] = counted(2**64)
    accuracy_meaningful: bool = flag()
    accuracy_meaningful_reason: str = text()


@dataclass(frozen=True)
class Artefact:
    """A vendor's own file the infer toolkit ran (--onnx-path, --engine-path)."""

    path: str = text()
    sha256: str = text()


@dataclass(frozen=True)
class Artefacts:
    onnx: Optional[Artefact] = section()
    engine: Optional[Artefact] = section()


@dataclass(frozen=True)
class Versions:
    python: str = text()
    python_implementation: str = text()
    torch: str = text()
    torchvision: str = text()
    numpy: str = text()
    PIL: str = text()
    cuda: Optional[str] = text()
    cudnn: Optional[str] = text()


@dataclass(frozen=True)
class Device:
    type: str = text(choices=("cpu", "cuda"))
    name: str = text()
    count: int = counted()
    logical_cpus: Optional[int] = counted(present="cpu")
    usable_cpus: Optional[int] = counted(present="cpu")
    torch_threads: Optional[int] = counted(present="cpu")
    index: Optional[int] = counted(present="cuda")
    capability: Optional[str] = text(present="cuda")
    multiprocessors: Optional[int] = counted(present="cuda")
    total_memory_gib: Optional[float] = gib(present="cuda")


@dataclass(frozen=True)
class Environment:
    versions: Versions = section()
    toolkits: Dict[str, Dict[str, Optional[str]]] = items(64)
    device: Device = section()
    platform: str = text()
    machine: str = text()
    executable: str = text()


@dataclass(frozen=True)
class Durations:
    load_s: Optional[float] = seconds()
    export_s: Optional[float] = seconds()
    compile_s: Optional[float] = seconds()
    warmup_s: Optional[float] = seconds()
    setup_s: Optional[float] = seconds()
    loader_start_s: Optional[float] = seconds()
    e2e_time_s: float = seconds()


@dataclass(frozen=True)
class Latency:
    p50: float = millis()
    p90: float = millis()
    p99: float = millis()
    mean: float = millis()
    min: float = millis()
    max: float = millis()


@dataclass(frozen=True)
class CorePass:
    batches: int = counted()
    held_batches: int = counted()
    held_gib: float = gib()
    wall_s: float = seconds()
    images: Optional[int] = counted(present="optional")  # metric version 3 and later


@dataclass(frozen=True)
class Calibration:
    images: int = counted()
    source: str = text()


@dataclass(frozen=True)
class Stage:
    toolkit: str = text()
    toolkit_notes: List[str] = items()
    precision: str = text()
    precision_note: Optional[str] = text()
    input_dtype: str = text()
    channels_last: bool = flag()
    batch_size: int = counted(low=1)
    n_images: int = counted()
    passes: int = counted()
    images: int = counted()
    batches: int = counted()
    padded_slots: int = counted()
    export_s: float = seconds()
    compile_s: float = seconds()
    warmup_s: float = seconds()
    warmup_batches: int = counted()
    warmup_latency_ms: Optional[Latency] = section()
    pipeline_wait_s: float = seconds()
    whole_s: float = seconds()
    pass_whole_s: List[float] = items(ITEMS_MAX * 64, 0, MAX_SECONDS, "s")
    core_s: float = seconds()
    core_in_pipeline_s: float = seconds()
    core_ratio: Optional[float] = ratio()
    core_pass: CorePass = section()
    h2d_s: float = seconds()
    d2h_s: float = seconds()
    throughput_whole_img_per_s: Optional[float] = img_per_s()
    throughput_core_img_per_s: Optional[float] = img_per_s()
    throughput_core_in_pipeline_img_per_s: Optional[float] = img_per_s()
    latency_in_pipeline_ms: Latency = section()
    latency_ms: Latency = section()
    top1_count: int = counted()
    top5_count: int = counted()
    top1_pct: float = percent()
    top5_pct: float = percent()
    deterministic_across_passes: bool = flag()
    timing_method: str = text()
    calibration: Optional[Calibration] = section()


@dataclass(frozen=True)
class Stages:
    val: Optional[Stage] = section()
    infer: Optional[Stage] = section()


@dataclass(frozen=True)
class AccuracyGate:
    target_top1_pct: Optional[float] = percent()
    passed: Optional[bool] = flag()
    reason: str = text()


@dataclass(frozen=True)
class StageMemory:
    mem_used_gib: float = gib()
    mem_used_source: str = text()
    device_used_minus_baseline_peak_gib: Optional[float] = gib(present="cuda")
    allocator_reserved_peak_gib: Optional[float] = gib(present="cuda")
    allocator_allocated_peak_gib: Optional[float] = gib(present="cuda")
    allocator_source: Optional[str] = text(present="cuda")


@dataclass(frozen=True)
class MemoryStages:
    val: Optional[StageMemory] = section()
    infer: Optional[StageMemory] = section()


@dataclass(frozen=True)
class Memory:
    mem_used_gib: Optional[float] = gib()
    mem_total_gib: Optional[float] = gib()
    mem_total_source: str = text()
    baseline_used_gib: Optional[float] = gib()
    baseline_source: Optional[str] = text()
    stages: MemoryStages = section()


@dataclass(frozen=True)
class Mfu:
    mfu: Optional[float] = ratio()
    mfu_flagperf_convention: Optional[float] = ratio()
    peak_flops_per_s: Optional[float] = flops_per_s()
    peak_source: Optional[str] = text()
    precision: str = text()
    flagperf_flops_per_image: float = flops_per_image()
    reason: Optional[str] = text()


@dataclass(frozen=True)
class MlperfRun:
    """One LoadGen performance run, as its detail log gives it (runner_in_container/mlperf/logs.py)."""

    log_dir: str = text()
    validity: str = text(choices=MLPERF_VALIDITY)
    reason: Optional[str] = text()  # why INVALID, in plain words
    latency_bound_met: Optional[bool] = flag()  # None: the scenario has no bound (Offline)
    target_qps: Optional[float] = qps()  # Server
    samples_per_s: Optional[float] = img_per_s()
    queries: int = counted()
    samples_per_query: int = counted(low=1)
    latency_ms: Optional[Latency] = section()


@dataclass(frozen=True)
class MlperfAccuracy:
    """LoadGen's accuracy run: each sample's top-1 from its accuracy log against the labels."""

    log_dir: str = text()
    samples: int = counted()
    top1_count: int = counted()
    top1_pct: float = percent()
    reason: Optional[str] = text()  # LoadGen's errors, where it logged any


@dataclass(frozen=True)
class Mlperf:
    """A LoadGen scenario's runs (docs/result_schema.md, ``mlperf``)."""

    scenario: str = text(choices=LOADGEN_SCENARIOS)
    loadgen_version: str = text()
    rules: str = text()
    compliant: bool = flag()
    compliance: str = text()  # "compliant: ..." or "not compliant: <why>"
    min_duration_s: float = seconds()
    server_latency_ms: Optional[float] = millis()
    server_qps: Optional[float] = qps()  # the highest good target QPS the search found
    batch_size: int = counted(low=1)
    batch_wait_ms: float = millis()
    performance_samples: int = counted(low=1)
    performance: MlperfRun = section()
    search: Optional[List[MlperfRun]] = items(64)
    accuracy: MlperfAccuracy = section()
    log_files: List[str] = items(256)


@dataclass(frozen=True)
class Result:
    """A whole result.json (docs/result_schema.md)."""

    schema: str = text(choices=(protocol.SCHEMA_NAME,))
    schema_version: int = counted()
    metric_version: Union[int, str] = metric_version()
    status: str = text(choices=protocol.STATUSES)
    error: Optional[Error] = section()
    warnings: List[str] = items()
    case: str = text()
    started_at_unix: float = unix_time()
    finished_at_unix: float = unix_time()
    config: Config = section()
    data: Data = section()
    weights: Weights = section()
    environment: Optional[Environment] = section()
    durations: Durations = section()
    stages: Stages = section()
    agreement_top1: Optional[float] = fraction()
    accuracy_gate: Optional[AccuracyGate] = section()
    memory: Optional[Memory] = section()
    flops_per_image: Optional[int] = counted(MAX_FLOPS_PER_IMAGE, low=1)
    flops_method: Optional[str] = text()
    mfu: Optional[Mfu] = section()
    artefacts: Optional[Artefacts] = section(present="optional")
    mlperf: Optional[Mlperf] = section(present="optional")  # a LoadGen scenario's runs; None: flagperf


#: statuses whose documents carry every figure (failed_accuracy: all there, flagged)
FIGURES_PRESENT = (protocol.STATUS_OK, protocol.STATUS_FAILED_ACCURACY)
#: what a result with figures must carry (not null)
_FIGURES: Tuple[Tuple[str, ...], ...] = (
    ("environment",),
    ("accuracy_gate",),
    ("memory",),
    ("flops_per_image",),
) + tuple(
    ("stages", stage, figure)
    for stage in protocol.PASS_STAGES
    for figure in ("throughput_whole_img_per_s", "throughput_core_img_per_s")
)


def parse(doc: Any) -> Result:
    """The typed result in ``doc`` (a decoded JSON document); Invalid, naming the first key that breaks the
    schema, unless it is a result of this schema version, whole and within bounds."""
    if not isinstance(doc, dict):
        raise Invalid((), doc, "not an object")
    version = doc.get("schema_version")
    if doc.get("schema") != protocol.SCHEMA_NAME or version != protocol.SCHEMA_VERSION:
        what = "expected %s version %d" % (protocol.SCHEMA_NAME, protocol.SCHEMA_VERSION)
        raise Invalid(("schema_version",), version, what)
    result = parse_as(Result, doc)
    if (result.error is None) == (result.status == protocol.STATUS_FAILED):
        raise Invalid(("error",), doc.get("error"), "must be an object exactly when status is failed")
    if result.status in FIGURES_PRESENT:
        ran = (result.config.stages or STAGE_CHOICES[0]).split(",")
        for path in _FIGURES:
            if path[0] == "stages" and path[1] not in ran:  # no val stage: its figures absent
                continue
            node: Any = result
            for depth, key in enumerate(path, 1):
                node = getattr(node, key)
                if node is None:
                    raise Invalid(path[:depth], None, "missing in a result with status %s" % result.status)
    for name in protocol.PASS_STAGES:
        stage = getattr(result.stages, name)
        if stage is not None:
            _check_counts(stage, ("stages", name))
    return result


def nullable(keys: Sequence[str]) -> Optional[Tuple[str, ...]]:
    """The longest start of the dotted path ``keys`` (through nested objects from ``Result``) whose field
    may be null, or None when none may."""
    cls: Any = Result
    found = None
    for depth, key in enumerate(keys, 1):
        hints = get_type_hints(cls) if is_dataclass(cls) else {}
        if key not in hints:
            break
        kind = hints[key]
        members = get_args(kind) if get_origin(kind) is Union else (kind,)
        if type(None) in members:
            found = tuple(keys[:depth])
        cls = next((member for member in members if is_dataclass(member)), None)
    return found


def _check_counts(stage: Stage, path: Tuple[str, ...]) -> None:
    """Counts of one stage that hold together: images = passes x n_images, top-1 hits <= top-5 hits <= N."""
    if stage.images != stage.passes * stage.n_images:
        what = "not passes x n_images (%d x %d)" % (stage.passes, stage.n_images)
        raise Invalid(path + ("images",), stage.images, what)
    if stage.top5_count > stage.n_images:
        raise Invalid(path + ("top5_count",), stage.top5_count, "above n_images (%d)" % stage.n_images)
    if stage.top1_count > stage.top5_count:
        raise Invalid(path + ("top1_count",), stage.top1_count, "above top5_count (%d)" % stage.top5_count)


def parse_as(cls: Type[_T], doc: Any, path: Tuple[str, ...] = ()) -> _T:
    """``doc`` read as the dataclass ``cls``: each key declared (unless ``cls.EXTRA_KEYS`` lets others
    through, unread), typed and within its field's rule."""
    if not isinstance(doc, dict):
        raise Invalid(path, doc, "not an object")
    declared = {f.name: f for f in fields(cls)}
    for key in doc:
        if key not in declared and not getattr(cls, "EXTRA_KEYS", False):
            raise Invalid(path + (str(key),), doc[key], "not a key of this schema")
    hints = get_type_hints(cls)
    values = {}
    for name, spec in declared.items():
        if name not in doc:
            if spec.default is MISSING:
                raise Invalid(path + (name,), None, "missing")
            continue
        values[name] = _value(hints[name], doc[name], path + (name,), spec.metadata["rule"])
    return cls(**values)


def _value(kind: Any, value: Any, path: Tuple[str, ...], rule: Rule) -> Any:
    """``value`` checked as the type hint ``kind`` with ``rule``."""
    origin, args = get_origin(kind), get_args(kind)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:  # Union[int, str]: the first type the value has
            if _is(option, value):
                return _value(option, value, path, rule)
        return _value(options[-1], value, path, rule)
    if isinstance(kind, type) and is_dataclass(kind):
        return parse_as(kind, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise Invalid(path, value, "not a list")
        if len(value) > rule.max_items:
            raise Invalid(path, value, "more than %d items" % rule.max_items)
        return [_value(args[0], item, path + ("%d" % i,), rule) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise Invalid(path, value, "not an object")
        if len(value) > rule.max_items:
            raise Invalid(path, value, "more than %d keys" % rule.max_items)
        out = {}
        for key, item in value.items():
            _value(str, key, path, Rule())
            out[key] = _value(args[1], item, path + (key,), rule)
        return out
    if not _is(kind, value):
        raise Invalid(path, value, "not %s" % _NAMES[kind])
    if rule.choices:
        if value not in rule.choices:
            raise Invalid(path, value, "not one of %s" % ", ".join(str(c) for c in rule.choices))
        return value
    if kind is str and len(value) > rule.max_len:
        raise Invalid(path, value, "longer than %d characters" % rule.max_len)
    if kind in (int, float):
        _check_figure(value, path, rule)
        return float(value) if kind is float else value
    return value


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _is(kind: Any, value: Any) -> bool:
    """Whether ``value`` has the scalar type ``kind`` (a boolean is no number; an integer is a number)."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check_figure(value: float, path: Tuple[str, ...], rule: Rule) -> None:
    unit = " " + rule.unit if rule.unit else ""
    if not math.isfinite(value):
        raise Invalid(path, value, "not a finite number")
    if value < rule.low or (rule.above_low and value == rule.low):
        raise Invalid(path, value, "%s %g%s" % ("not above" if rule.above_low else "below", rule.low, unit))
    if value > rule.high:
        raise Invalid(path, value, "above %g%s" % (rule.high, unit))
    if value != 0 and abs(value) < MIN_MAGNITUDE:
        raise Invalid(path, value, "below %g%s: no such measurement" % (MIN_MAGNITUDE, unit))
