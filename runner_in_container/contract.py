"""The contract between the orchestrator and the runner: every fact both sides need, declared once.

The input side lives here: the runner's command-line options (name, type, range, default,
help), from which the runner derives its parser (``cli.build_parser``) and the orchestrator
renders the runner's argv (``render_argv``), and the vocabulary both sides check against:
cases, toolkits and the precisions each runs, precisions, dataset layouts, decoders, weight
specs, the MPS pipe folder. The output side (result file, statuses, exit codes, progress
events, stage names) lives in ``protocol.py``.

Standard library only, Python 3.8: the orchestrator imports it without torch.
"""

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

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
#: the runner's own knob, taken with any toolkit's options (runner_in_container/hold.py)
HOLD_KNOB = "hold_until"
#: toolkit -> the knobs (``toolkit_options``) it reads; Toolkit.option refuses any other key
TOOLKIT_KNOBS: Dict[str, Tuple[str, ...]] = {
    "cudnn_fused": ("cudnn_fused_branches", "cudnn_fused_graph"),
    "inductor": ("inductor_conv_1x1_as_mm", "inductor_cudnn_benchmark", "inductor_freezing", "inductor_mode"),
    "torch_tensorrt": ("torch_tensorrt_ir",),
    "xtcl": ("xtcl_device_type",),
    "zxrt": ("zxrt_card",),
}
#: the toolkit of the val stage
VAL_TOOLKIT = "pytorch"

#: dataset layouts on disk, and "auto" (detected)
DATASET_LAYOUTS = ("imagefolder", "flat", "tar")
LAYOUTS = ("auto",) + DATASET_LAYOUTS

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

#: where CUDA clients look for an MPS control daemon's pipes when CUDA_MPS_PIPE_DIRECTORY is unset
MPS_DEFAULT_PIPE_DIRECTORY = "/tmp/nvidia-mps"


def weights_is_file(spec: str) -> bool:
    """Whether the weights spec names a file (rather than one of WEIGHT_SPECS)."""
    return spec not in WEIGHT_SPECS


def knobs(toolkit: str) -> Tuple[str, ...]:
    """The ``toolkit_options`` keys a job with ``toolkit`` reads: the toolkit's own and the runner's."""
    return (HOLD_KNOB,) + TOOLKIT_KNOBS.get(toolkit, ())


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
    Option("weights", "weights: a file (a sha256 prefix in a torch.hub-style name, e.g. "
           "resnet50-0676ba61.pth, is verified), 'random' (seeded random init; accuracy not meaningful) or "
           "'package' (weights shipped in an installed package, for cases that have them) (required)",
           required=True, metavar="PATH|random|package"),
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
