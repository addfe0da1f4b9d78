"""The device data path on the CPU: JPEG routing, the PIL-exact resize and crop, batch assembly, fallbacks.

The code that runs on the GPU (resample.resize_crop_into, DeviceBatchLoader) runs here on CPU tensors, with
torchvision's libjpeg decoder in place of nvJPEG. Decoding and resizing are measured separately against the
PIL path (``resize_crop_pil(decode_rgb(...))``):

* resize + crop on the same decoded pixels: float64 equals PIL bit for bit; float32 (what the GPU runs)
  differs by at most 1 level on at most 0.1% of the pixels (measured ~0.04%);
* decode: torchvision's libjpeg and PIL's libjpeg-turbo give the same pixels here (nvJPEG differs by design,
  in its IDCT and chroma upsampling; the H200 bench measures that difference);
* the whole CPU-run device pipeline: max 1 level, mean <= 0.01.
"""

import io
import json
import os
import threading
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from runner_in_container import cli, run
from runner_in_container.data import DataError, decoder_choice, device_loader, open_dataset, process_count
from runner_in_container.data.decode import decode_rgb
from runner_in_container.data.errors import DecoderUnavailable
from runner_in_container.data.generate import encode, generate, labels_path, render
from runner_in_container.data.jpeg_info import cpu_reason, read_header
from runner_in_container.data.loader import BatchLoader
from runner_in_container.data.pipeline import open_loader
from runner_in_container.data.preprocess import Preprocessing, resize_crop_pil
from runner_in_container.data.resample import geometry, pil_reorders, resize_crop_into
from tests.test_runner_schema import check_result

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

PP = Preprocessing()
CPU = torch.device("cpu")
#: (width, height) of generated images: landscape, portrait, square, smaller than the resize (upscaled),
#: shorter side exactly 256, and tall ones (height loses > 2x the width's pixels: Pillow 13 resizes
#: vertically first)
SIZES = [(500, 375), (375, 500), (333, 500), (400, 400), (180, 120), (256, 300), (300, 256), (261, 738)]
SIZES += [(200, 640), (640, 700), (227, 227), (1024, 683), (257, 1000), (90, 300)]


def _jpeg(size, number=1, **save) -> bytes:
    """A generated photo stand-in of exactly ``size`` (width, height) as a JPEG."""
    buf = io.BytesIO()
    render(0, number, size).resize(size, Image.BILINEAR).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def _pil_path(data: bytes) -> np.ndarray:
    return resize_crop_pil(decode_rgb(data, "x"), PP).transpose(2, 0, 1)


def _resized(images: List[torch.Tensor], dtype: torch.dtype) -> np.ndarray:
    out = torch.full((len(images) + 1, 3, PP.crop, PP.crop), 7, dtype=torch.uint8)
    slots = list(range(len(images)))[::-1]  # reversed: the grouping must not lose the order
    resize_crop_into(out, images, slots, PP, dtype=dtype)
    assert torch.all(out[len(images)] == 7)  # only the given slots are written
    return out.numpy()[: len(images)][::-1]


def _differences(a: np.ndarray, b: np.ndarray):
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return int(d.max()), float(d.mean()), float((d > 0).mean())


# -- routing by JPEG header ---------------------------------------------------------------


def test_headers_route_what_nvjpeg_takes_and_name_the_rest():
    rgb = _jpeg((120, 90))
    header = read_header(rgb)
    assert (header.width, header.height, header.precision, len(header.component_ids)) == (120, 90, 8, 3)
    assert cpu_reason(header) is None
    assert cpu_reason(read_header(_jpeg((120, 90), progressive=True))) == "progressive JPEG"
    exif = Image.Exif()
    exif[0x010E] = "x" * 5000  # a long APP1 segment before the frame header
    assert read_header(_jpeg((64, 48), exif=exif.tobytes())).width == 64
    png, cmyk, gray = (encode((0, n, (60, 40), kind)) for n, kind in ((3, "PNG"), (1, "CMYK"), (2, "L")))
    assert cpu_reason(read_header(png)) == "not a JPEG"
    assert cpu_reason(read_header(cmyk)) == "CMYK or YCCK JPEG"
    assert cpu_reason(read_header(gray)) == "grayscale JPEG"
    assert cpu_reason(read_header(rgb[:20])) == "not a JPEG"  # cut before its frame header
    assert cpu_reason(read_header(b"")) == "not a JPEG"
    # 'R', 'G', 'B' component ids without JFIF or Adobe segment: libjpeg reads the frame as RGB
    no_jfif = b"\xff\xd8" + rgb[rgb.index(b"\xff\xdb") :]  # SOI, then from the first table on
    start = no_jfif.index(b"\xff\xc0") + 10
    rgb_ids = bytearray(no_jfif)
    rgb_ids[start], rgb_ids[start + 3], rgb_ids[start + 6] = 82, 71, 66
    assert cpu_reason(read_header(bytes(rgb_ids))) == "RGB-coded JPEG (no YCbCr transform)"


# -- resize and crop: the same decoded pixels -------------------------------------------------


def test_resize_equals_pil_bit_for_bit_in_float64_and_within_one_level_in_float32():
    blobs = [_jpeg(size, number) for number, size in enumerate(SIZES, 1)]
    decoded = [torch.from_numpy(np.asarray(decode_rgb(b, "x")).transpose(2, 0, 1).copy()) for b in blobs]
    expected = np.stack([_pil_path(b) for b in blobs])
    assert any(geometry(h, w, PP).vertical_first for w, h in SIZES) == pil_reorders()
    assert _differences(_resized(decoded, torch.float64), expected) == (0, 0.0, 0.0)
    worst, mean, fraction = _differences(_resized(decoded, torch.float32), expected)
    assert worst <= 1 and fraction <= 1e-3, (worst, mean, fraction)


def test_pil_pass_order_probe_matches_this_pillow():
    # the probe's answer is what makes the float64 comparison above exact for the tall images
    tall = geometry(738, 261, PP)
    assert tall.vertical_first == pil_reorders()
    assert not geometry(375, 500, PP).vertical_first  # landscape: never


def test_only_the_source_region_the_crop_reads_is_used():
    geo = geometry(375, 500, PP)  # resized to 256 x 341, crop rows 16..239, columns 58..281
    assert (geo.rows.start, geo.rows.stop, geo.cols.start, geo.cols.stop) == (23, 352, 84, 414)
    assert geo.rows.span < 375 * 0.9 and geo.cols.span < 500 * 0.7
    with pytest.raises(ValueError, match="resize >= crop"):
        geometry(100, 100, Preprocessing(resize=200, crop=224))


# -- decode, then the whole CPU-run device pipeline, on generated and real images ------------


def _decode_and_resize_differences(blobs: List[bytes]):
    tv = [
        decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8), mode=ImageReadMode.RGB) for b in blobs
    ]
    pil = [np.asarray(decode_rgb(b, "x")).transpose(2, 0, 1) for b in blobs]
    decode = max(_differences(t.numpy(), p)[0] for t, p in zip(tv, pil))
    whole = _differences(_resized(tv, torch.float32), np.stack([_pil_path(b) for b in blobs]))
    return decode, whole


def test_decode_and_whole_pipeline_differences_on_generated_images():
    decode, (worst, mean, _) = _decode_and_resize_differences([_jpeg(s, n) for n, s in enumerate(SIZES, 1)])
    assert decode == 0  # torchvision's libjpeg and PIL's agree here
    assert worst <= 1 and mean <= 0.01


def test_decode_and_whole_pipeline_differences_on_real_imagenet_images(real_data):
    files = sorted((real_data / "imagenet_val_sample" / "ILSVRC2012_img_val").glob("*.JPEG"))[:48]
    decode, (worst, mean, _) = _decode_and_resize_differences([f.read_bytes() for f in files])
    assert decode == 0
    assert worst <= 1 and mean <= 0.01


# -- the loader: order, padding, fallbacks, errors, threads -----------------------------------


@pytest.fixture
def flat(tmp_path):
    """11 images in varied sizes: 1-3 are a CMYK JPEG, a grayscale JPEG and a PNG behind .JPEG."""
    path = generate(str(tmp_path / "set"), 11, layout="flat", seed=5, edge_cases=True, size=(300, 260))
    return path, labels_path(str(tmp_path / "set"), "flat")


def test_batches_match_the_pil_loader_in_order_with_padding_and_fallbacks(flat):
    ds = open_dataset(*flat)
    loader = device_loader.DeviceBatchLoader(ds, 4, PP, CPU, workers=3, prefetch=1)
    assert loader.cpu_fallbacks is None
    batches = list(loader)
    expected = list(BatchLoader(ds, 4, PP, workers=2))
    assert len(loader) == len(batches) == 3 and [b.valid for b in batches] == [4, 4, 3]
    assert loader.cpu_fallbacks == {"CMYK or YCCK JPEG": 1, "grayscale JPEG": 1, "not a JPEG": 1}
    for got, want in zip(batches, expected):
        assert got.images.shape == (4, 3, 224, 224) and got.images.dtype == torch.uint8
        assert torch.equal(got.labels, want.labels)
        worst, mean, _ = _differences(got.images.numpy(), want.images.numpy())
        assert worst <= 1 and mean <= 0.01
    for slot in range(3):  # the CPU path's images are the PIL loader's exactly
        assert torch.equal(batches[0].images[slot], expected[0].images[slot])
    assert batches[-1].labels[3].item() == -1 and int(batches[-1].images[3].abs().sum()) == 0


def test_every_pass_decodes_again(flat):
    path, labels = flat
    ds = open_dataset(path, labels)
    loader = device_loader.DeviceBatchLoader(ds, 4, PP, CPU, workers=2)
    first = [b.images.clone() for b in loader]
    Path(path, ds.samples[6].name).write_bytes(Path(path, ds.samples[4].name).read_bytes())
    second = [b.images for b in loader]
    assert torch.equal(second[1][2], first[1][0]) and not torch.equal(second[1][2], first[1][2])


def test_an_image_the_device_decoder_rejects_takes_the_cpu_path(flat, monkeypatch):
    ds = open_dataset(*flat)
    rejected = ds.read(7)
    real = torchvision.io.decode_jpeg
    calls = []

    def decode(data, mode, device):  # nvJPEG stand-in that refuses one image, as a batch or alone
        calls.append(isinstance(data, list))
        items = data if isinstance(data, list) else [data]
        if any(bytes(t.numpy()) == rejected for t in items):
            raise RuntimeError("Error while decoding JPEG images")
        return real(data, mode=mode, device=device)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode)
    loader = device_loader.DeviceBatchLoader(ds, 4, PP, CPU, workers=2)
    loader.wait_started()
    assert calls == [True]  # started: warmed up on the first batch
    calls.clear()
    batches = list(loader)
    assert loader.cpu_fallbacks[device_loader.DECODER_ERROR] == 1 and sum(loader.cpu_fallbacks.values()) == 4
    assert calls.count(True) == 3 and calls.count(False) == 4  # batch 2 retried image by image
    want = list(BatchLoader(ds, 4, PP, workers=2))
    assert torch.equal(batches[1].images[3], want[1].images[3])


def test_a_broken_file_fails_the_pass_naming_it_and_no_thread_is_left(flat):
    path, labels = flat
    ds = open_dataset(path, labels)
    Path(path, ds.samples[9].name).write_bytes(b"\xff\xd8 not really a JPEG")
    before = set(threading.enumerate())
    seen = []
    with pytest.raises(DataError, match=ds.samples[9].name + ": cannot decode image"):
        with device_loader.DeviceBatchLoader(ds, 4, PP, CPU, workers=3) as loader:
            for batch in loader:
                seen.append(batch.valid)
    assert seen == [4, 4] and not any(t.is_alive() for t in set(threading.enumerate()) - before)
    with device_loader.DeviceBatchLoader(ds, 2, PP, CPU, workers=3, prefetch=3) as loader:
        iterator = iter(loader)
        next(iterator)
        iterator.close()
        started = set(threading.enumerate()) - before
        assert len(started) == 3  # the CPU path's pool, started before any pass; the pass's threads ended
    assert not any(t.is_alive() for t in started)


@pytest.mark.parametrize("field", ["batch_size", "workers", "prefetch"])
def test_bad_settings(flat, field):
    settings = {"batch_size": 4, "workers": 2, "prefetch": 2, field: 0}
    with pytest.raises(ValueError, match=f"{field} must be at least 1, got 0"):
        device_loader.DeviceBatchLoader(open_dataset(*flat), pp=PP, device=CPU, **settings)


# -- which decoder runs ------------------------------------------------------------------------


def test_decoder_choice_on_the_cpu():
    assert decoder_choice.resolve_decoder("pil", CPU, 0, 16) == decoder_choice.pil_decoder()
    auto = decoder_choice.resolve_decoder("auto", CPU, 3, 16)
    assert auto.name == "pil" and auto.description.startswith("PIL ") and auto.processes == 1
    assert auto.fallback_reason == "the device is cpu: nvJPEG decodes on CUDA devices only"
    with pytest.raises(DecoderUnavailable, match="CUDA devices only"):
        decoder_choice.resolve_decoder("nvjpeg", CPU, 0, 16)
    with pytest.raises(ValueError, match="decoder must be one of"):
        decoder_choice.resolve_decoder("dali", CPU, 0, 16)
    nvjpeg = decoder_choice.Decoder("nvjpeg", "x", "y", True, None, 1)
    assert isinstance(open_loader(nvjpeg, None, 4, PP, CPU, 2, False), device_loader.DeviceBatchLoader)
    assert isinstance(open_loader(auto, None, 4, PP, CPU, 2, False), BatchLoader)


@pytest.mark.parametrize("cpus, processes", [(1, 1), (7, 1), (8, 2), (12, 3), (16, 4), (128, 4)])
def test_default_decoding_processes(cpus, processes):
    assert process_count.default_processes(cpus, mps=False) == processes


@pytest.mark.parametrize("cpus, processes", [(1, 1), (3, 1), (8, 4), (12, 6), (16, 8), (128, 64)])
def test_default_decoding_processes_with_mps(cpus, processes):
    assert process_count.default_processes(cpus, mps=True) == processes


def test_the_mps_control_pipe_is_found_where_the_cuda_driver_looks(tmp_path, monkeypatch):
    pipes = tmp_path / "mps"
    assert process_count.mps_control_pipe({"CUDA_MPS_PIPE_DIRECTORY": str(pipes)}) is None  # no directory
    pipes.mkdir()
    assert process_count.mps_control_pipe({"CUDA_MPS_PIPE_DIRECTORY": str(pipes)}) is None  # no daemon
    os.mkfifo(pipes / "control")
    assert process_count.mps_control_pipe({"CUDA_MPS_PIPE_DIRECTORY": str(pipes)}) == str(pipes / "control")
    monkeypatch.setattr(process_count, "MPS_DEFAULT_PIPE_DIRECTORY", str(pipes))
    assert process_count.mps_control_pipe({}) == str(pipes / "control")  # the driver's default directory
    assert process_count.mps_control_pipe({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}) is None
    assert "MPS daemon of " + str(pipes / "control") in decoder_choice.gpu_sharing(str(pipes / "control"))
    assert "time-sliced" in decoder_choice.gpu_sharing(None)


def test_an_mps_daemon_asked_for_and_not_there_is_a_warning(tmp_path):
    asked = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}
    warning = decoder_choice.mps_missing(asked, 6)
    assert warning.startswith(f"CUDA_MPS_PIPE_DIRECTORY is {tmp_path} but no MPS daemon")
    assert "6 decoding processes" in warning
    # decoding in the runner's own process: nothing to share
    assert decoder_choice.mps_missing(asked, 1) is None
    assert decoder_choice.mps_missing({}, 6) is None  # not asked for
    os.mkfifo(tmp_path / "control")
    assert decoder_choice.mps_missing(asked, 6) is None  # there


def test_decoding_processes_with_the_pil_decoder_are_bad_input(tmp_path, capsys):
    data = generate(str(tmp_path / "set"), 2, layout="imagefolder", size=(64, 48))
    argv = ["--case", "resnet50", "--data", data, "--weights", "random", "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + ["--out", str(tmp_path / "out"), "--decoder", "pil", "--decode-processes", "2"])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err.startswith("error: --decode-processes: applies to nvjpeg")


def test_nvjpeg_on_the_cpu_is_bad_input(tmp_path, capsys):
    data = generate(str(tmp_path / "set"), 2, layout="imagefolder", size=(64, 48))
    out = tmp_path / "out"
    argv = ["--case", "resnet50", "--data", data, "--weights", "random", "--device", "cpu", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + ["--decoder", "nvjpeg"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and not out.exists()
    assert err == "error: --decoder: the device is cpu: nvJPEG decodes on CUDA devices only\n"


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_the_runner_with_the_device_loader_records_its_fallbacks(tmp_path, processes):
    data = generate(str(tmp_path / "set"), 5, layout="imagefolder", size=(96, 72), edge_cases=True)
    out = tmp_path / "out"
    argv = ["--case", "efficientnet_lite0", "--data", data, "--weights", "random", "--device", "cpu"]
    argv += ["--batch-size", "2", "--warmup", "1", "--workers", "2", "--out", str(out)]
    config = cli.set_up(cli.config_from_args(cli.build_parser().parse_args(argv), argv))
    assert config.decoder.name == "pil" and "CUDA devices only" in config.decoder.fallback_reason
    description = "libjpeg via decode_jpeg on the CPU (test)"
    warning = decoder_choice.mps_missing({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}, processes)
    on_cpu = decoder_choice.Decoder("nvjpeg", description, "device resize", True, None, processes, warning)
    assert run.run(config._replace(decoder=on_cpu)) == 0
    doc = json.loads((out / "result.json").read_text())
    assert check_result(doc) == []
    assert (warning in doc["warnings"]) if processes > 1 else (warning is None)
    assert (doc["data"]["decoder"], doc["data"]["resize"]) == (on_cpu.description, on_cpu.resize)
    assert doc["data"]["cpu_fallback_images"] == 3 and doc["data"]["decoder_fallback_reason"] is None
    assert doc["data"]["decode_processes"] == processes
    reasons = {"CMYK or YCCK JPEG": 1, "grayscale JPEG": 1, "not a JPEG": 1}
    assert doc["data"]["cpu_fallback_reasons"] == reasons
    assert doc["stages"]["infer"]["images"] == 5 and doc["stages"]["val"]["deterministic_across_passes"]
