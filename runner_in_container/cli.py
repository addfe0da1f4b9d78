"""Command line of the runner: parse and check every input, then hand a Config to ``run``.

Bad input ends here with one line ``error: <field>: <what>`` on stderr, exit status 2,
and nothing written. Once the inputs are good, failures are reported by ``run`` in
result.json (status "failed", exit status 1).
"""

import argparse
import os
import re
import sys
import tempfile
from typing import Any, Callable, Dict, List, NamedTuple, NoReturn, Optional

import torch

from . import cases, contract, device, protocol, run, toolkits
from .contract import VAL_TOOLKIT
from .data import DataError, open_dataset
from .data.decoder_choice import resolve_decoder
from .data.errors import DecoderUnavailable
from .data.process_count import decoding_processes, usable_cpus
from .data.spawned import Spawned
from .hashing import sha256_file
from .host_batches import calibration_source
from .mlperf import settings as mlperf_settings
from .runconfig import Config
from .toolkits.base import Toolkit, ToolkitSettings


class BadInput(Exception):
    """An input the run cannot start with."""

    def __init__(self, field: str, what: str) -> None:
        super().__init__(f"{field}: {what}")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors in this runner's format."""

    def error(self, message: str) -> NoReturn:
        required = re.match(r"the following arguments are required: (.*)", message)
        if required:
            message = f"{required.group(1)}: required"
        else:
            message = re.sub(r"^argument ([^:]+): ", lambda m: m.group(1).split("/")[-1] + ": ", message)
        _fail(message)


def _fail(message: str) -> NoReturn:
    sys.stderr.write("error: " + message.replace("\n", " ") + "\n")
    sys.exit(protocol.EXIT_BAD_INPUT)


#: decode threads by default: more compete with an eager model's kernel launches for the GIL and inflate
#: its core window (H200, 16 cores, ResNet50 fp16 bs 256: 15.3 ms with 4 threads, 29 ms with 8, 191 with 14)
DEFAULT_WORKERS = 4


def _default_workers() -> int:
    return max(1, min(DEFAULT_WORKERS, usable_cpus()))


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A contract check as an argparse type: its ValueError message becomes the one-line error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    """The runner's parser, derived from the options of the contract (contract.OPTIONS)."""
    parser = _Parser(
        prog="python -m runner_in_container",
        description="Run one image-classification benchmark case: a val stage (PyTorch) and an infer stage "
        "(the chosen toolkit), each R passes over every image of the set; writes OUT/result.json.",
        epilog="Exit status: 0 ok, 3 ran but failed its accuracy gate, 1 failed after starting (result.json "
        "says where), 2 bad input (nothing written). Progress events are JSON lines on stdout.",
    )
    defaults = {"workers": _default_workers()}  # the one default that depends on where the runner runs
    for option in contract.OPTIONS:
        kwargs = {"help": option.help, "metavar": option.metavar}  # type: Dict[str, Any]
        if option.repeated:
            kwargs.update(action="append", default=[])
        else:
            kwargs.update(default=defaults.get(option.name, option.default), required=option.required)
        if option.choices is not None:
            kwargs.update(choices=option.choices, metavar=None)
        elif option.parse is not contract.text:
            kwargs["type"] = _argparse_type(option.parse)
        parser.add_argument(option.flag, **kwargs)
    return parser


def _check_path(field: str, path: Optional[str], kind: str = "any") -> None:
    if path is None:
        return
    if not os.path.exists(path):
        raise BadInput(field, f"{path}: no such file or directory")
    if kind == "file" and not os.path.isfile(path):
        raise BadInput(field, f"{path}: not a file")


def _check_dir_target(field: str, path: Optional[str]) -> None:
    if path is not None and os.path.exists(path) and not os.path.isdir(path):
        raise BadInput(field, f"{path}: exists and is not a directory")


def _toolkit(name: str, settings: ToolkitSettings, field: str, options: Dict[str, str]) -> Toolkit:
    """The toolkit ``name`` set up for ``settings``; BadInput if it cannot run them."""
    cls = toolkits.load(name)  # a name of contract.TOOLKITS: the parser took no other
    if settings.precision not in cls.precisions:
        raise BadInput(
            field, f"toolkit {name} does not run {settings.precision} (it runs: {', '.join(cls.precisions)})"
        )
    settings.options.update(options)
    try:
        return cls(settings)
    except ValueError as exc:
        raise BadInput(field, str(exc)) from exc


def _options(pairs: List[str]) -> Dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput("--toolkit-option", f"expected KEY=VALUE, got {pair!r}")
        options[key] = value
    return options


def val_precision(precision: str, dev: torch.device) -> str:
    """The val stage's precision: the run's, except int8 (fp16 on cuda, fp32 on cpu)."""
    if precision != "int8":
        return precision
    return "fp16" if dev.type == "cuda" else "fp32"


class Request(NamedTuple):
    """The parsed command line, checked where that is quick (``config_from_args``)."""

    args: argparse.Namespace
    argv: List[str]
    options: Dict[str, str]  # --toolkit-option pairs


def config_from_args(args: argparse.Namespace, argv: List[str]) -> Request:
    """Check what is quick to check (paths, the options and knobs together: contract.check_run); raise
    BadInput on the first problem.

    The slow set-up (the device and its decoder probed, the weights and a tar hashed, the toolkits built)
    is ``set_up``'s, after the start event.
    """
    _check_path("--data", args.data)
    _check_path("--labels", args.labels, "file")
    _check_path("--onnx-path", args.onnx_path, "file")
    _check_path("--engine-path", args.engine_path, "file")
    _check_dir_target("--out", args.out)
    _check_dir_target("--engine-cache", args.engine_cache)
    options = _options(args.toolkit_option)
    try:
        contract.check_run(vars(args), options)
    except contract.Conflict as exc:
        option = contract.OPTION.get(exc.name)
        if option is None:  # a knob
            raise BadInput("--toolkit-option", str(exc)) from None
        raise BadInput(option.flag, exc.what) from None
    if mlperf_settings.from_options(vars(args)) is not None:
        try:
            mlperf_settings.require()
        except mlperf_settings.MissingLoadGen as exc:
            raise BadInput("--scenario", "%s: %s" % (args.scenario, exc)) from None
    return Request(args, argv, options)


def _step(name: str) -> None:
    protocol.emit("stage", stage=protocol.STAGE_SETUP, step=name)


def _spawn_decoders(
    requested: str, dev: torch.device, processes: int, ahead: Optional[Spawned]
) -> Optional[Spawned]:
    """The decoding processes where nvJPEG may decode in several: those spawned ahead (ahead.py) when they
    are the ones needed, else spawned now (the loader takes them, or stops them when the decoder turns out
    otherwise). Either may make its device context from now on: the memory baseline is taken."""
    wanted = 0 if requested == "pil" or dev.type != "cuda" else decoding_processes(processes, usable_cpus())
    if ahead is not None and (ahead.device, ahead.processes) != (str(dev), wanted):
        ahead.close()
        ahead = None
    spawned = ahead or (Spawned(wanted, device=str(dev)) if wanted > 1 else None)
    if spawned is not None:
        spawned.use_device()
    return spawned


def set_up(request: Request, ahead: Optional[Spawned] = None) -> Config:
    """The run's Config: the device opened (its memory baseline taken), decoding processes spawned (or
    those spawned ahead taken), the decoder probed, weights and data set opened (hashes checked), toolkits
    built; BadInput on a problem."""
    args, options = request.args, request.options
    case = cases.discover()[args.case]
    _step("device")
    try:
        dev = device.resolve(args.device)
    except device.DeviceError as exc:
        raise BadInput("--device", str(exc)) from exc
    opened = device.open_device(dev)
    opened.take_baseline()
    spawned = _spawn_decoders(args.decoder, dev, args.decode_processes, ahead)
    try:
        return _set_up(request, case, opened, spawned, options)
    except BaseException:
        if spawned is not None:
            spawned.close()
        raise


def _set_up(
    request: Request,
    case: cases.Case,
    opened: device.Device,
    spawned: Optional[Spawned],
    options: Dict[str, str],
) -> Config:
    args, dev = request.args, opened.device
    _step("decoder")
    try:
        decoder = resolve_decoder(args.decoder, dev, args.decode_processes, usable_cpus())
    except DecoderUnavailable as exc:
        raise BadInput("--decoder", str(exc)) from exc
    _step("data")
    try:
        weights = case.resolve_weights(args.weights, args.weights_sha256)
    except cases.WeightsError as exc:
        raise BadInput("--weights", str(exc)) from exc
    try:
        dataset = open_dataset(
            args.data, labels=args.labels, layout=args.layout, md5=args.data_md5, limit=args.max_images
        )
    except DataError as exc:
        raise BadInput("--data", str(exc)) from exc
    if not dataset.samples:
        raise BadInput("--data", f"{args.data}: no images")
    if args.batch_size > len(dataset.samples):  # every batch mostly padding, its memory for nothing
        raise BadInput(
            "--batch-size",
            f"{args.batch_size} is larger than the {len(dataset.samples)} images of --data; "
            f"use at most {len(dataset.samples)}",
        )

    _step("toolkits")
    work_dir = os.path.join(tempfile.gettempdir(), f"rn50bench-{os.getpid()}")
    calibration, calibration_info = None, None
    if args.precision == "int8":
        calibration, calibration_info = calibration_source(dataset, case.preprocessing, args.batch_size)

    def settings(stage: str, precision: str, **extra: Any) -> ToolkitSettings:
        return ToolkitSettings(
            dev, precision, args.batch_size, os.path.join(work_dir, stage), args.engine_cache, **extra
        )

    infer_settings = settings(
        protocol.STAGE_INFER,
        args.precision,
        calibration=calibration,
        onnx_path=args.onnx_path,
        engine_path=args.engine_path,
    )
    infer = _toolkit(args.toolkit, infer_settings, "--precision", options)
    val = None
    if protocol.STAGE_VAL in args.stages.split(","):
        val_settings = settings(protocol.STAGE_VAL, val_precision(args.precision, dev))
        val = _toolkit(VAL_TOOLKIT, val_settings, "--precision", {})
    return Config(
        case=case,
        dataset=dataset,
        weights=weights,
        val_toolkit=val,
        infer_toolkit=infer,
        calibration=calibration_info,
        precision=args.precision,
        batch_size=args.batch_size,
        repeat=args.repeat,
        dev=opened,
        decoder=decoder,
        spawned=spawned,
        workers=args.workers,
        warmup=args.warmup,
        out=args.out,
        work_dir=work_dir,
        engine_cache=args.engine_cache,
        peak_flops=args.peak_flops,
        peak_source=args.peak_source,
        max_images=args.max_images,
        mlperf=mlperf_settings.from_options(vars(args)),
        args=dict(vars(args), device=str(dev), toolkit_option=options, argv=list(request.argv)),
        artefacts={
            name: None if path is None else {"path": os.path.abspath(path), "sha256": sha256_file(path)}
            for name, path in (("onnx", args.onnx_path), ("engine", args.engine_path))
        },
    )


def main(argv: Optional[List[str]] = None, ahead: Optional[Spawned] = None) -> int:
    """Parse, emit the start event, set up (taking the decoding processes spawned ``ahead``, if any), run;
    bad input (before or after the start event) exits 2 with one line on stderr and nothing written."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        request = config_from_args(args, argv)
        protocol.emit(
            "start",
            case=args.case,
            toolkit=args.toolkit,
            precision=args.precision,
            device=args.device or "auto",
            repeat=args.repeat,
            batch_size=args.batch_size,
        )
        config = set_up(request, ahead)
    except BadInput as exc:
        _fail(str(exc))
    return run.run(config)
