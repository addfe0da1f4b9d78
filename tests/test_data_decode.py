"""decode_rgb on every mode ImageNet-like data can hold, and the preprocessing contract vs torchvision."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from runner_in_container.data import DataError
from runner_in_container.data.decode import decode_rgb
from runner_in_container.data.generate import render
from runner_in_container.data.preprocess import Preprocessing, normalize, resize_crop_pil


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png16_rgb(pixels: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one), built chunk by chunk."""
    h, w, _ = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return render(seed=1, number=7, size=(80, 60))


def test_modes_decode_to_rgb_as_pil_converts_them(photo):
    cases = {
        "cmyk.JPEG": _encoded(photo.convert("CMYK"), "JPEG", quality=90),
        "gray.JPEG": _encoded(photo.convert("L"), "JPEG", quality=90),
        "palette.png": _encoded(photo.convert("P"), "PNG"),
        "rgba.png": _encoded(photo.convert("RGBA"), "PNG"),
        "png-behind.JPEG": _encoded(photo, "PNG"),
    }
    for name, data in cases.items():
        img = decode_rgb(data, name)
        assert img.mode == "RGB" and img.size == photo.size, name
        reference = Image.open(io.BytesIO(data)).convert("RGB")  # torchvision's ImageFolder loader
        assert np.array_equal(np.asarray(img), np.asarray(reference)), name
    assert np.array_equal(np.asarray(decode_rgb(cases["png-behind.JPEG"], "x")), np.asarray(photo))


def test_cmyk_jpeg_colours_survive():
    red = Image.new("RGB", (32, 32), (220, 30, 30))
    img = decode_rgb(_encoded(red.convert("CMYK"), "JPEG", quality=95), "red.JPEG")
    r, g, b = np.asarray(img).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 50 and b < 50


def test_16_bit_images_are_scaled_not_clipped():
    gray = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    img = decode_rgb(_encoded(Image.fromarray(gray), "PNG"), "gray16.png")
    assert img.mode == "RGB"
    assert np.asarray(img)[0].tolist() == [[0, 0, 0], [128, 128, 128], [255, 255, 255]]
    rgb = np.array([[[65535, 0, 257 * 64]]], dtype=np.uint16)
    img = decode_rgb(_png16_rgb(rgb), "rgb16.png")
    assert img.mode == "RGB" and np.asarray(img)[0, 0].tolist() == [255, 0, 64]


@pytest.mark.parametrize("cut", [0, 10, 200, -200])
def test_bad_data_names_the_file(photo, cut):
    jpeg = _encoded(photo, "JPEG", quality=90)
    data = jpeg[:cut]
    with pytest.raises(DataError, match=r"^val/n01440764/broken\.JPEG: cannot decode image: "):
        decode_rgb(data, "val/n01440764/broken.JPEG")


def test_garbage_names_the_file():
    with pytest.raises(DataError, match=r"^junk\.JPEG: cannot decode image"):
        decode_rgb(b"this is not an image" * 50, "junk.JPEG")


def _torchvision(img: Image.Image, pp: Preprocessing) -> torch.Tensor:
    return transforms.Compose(
        [
            transforms.Resize(pp.resize),
            transforms.CenterCrop(pp.crop),
            transforms.ToTensor(),
            transforms.Normalize(pp.mean, pp.std),
        ]
    )(img)


def _images(photos):
    for name, photo in photos.items():  # real photos (tests/fixtures/photos.py)
        yield name, decode_rgb(_encoded(photo, "PNG"), name)
    for number, size in enumerate([(500, 375), (333, 500), (180, 120), (256, 256)]):
        yield str(size), render(seed=5, number=number, size=size)


@pytest.mark.parametrize("pp", [Preprocessing(), Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3)])
def test_resize_crop_and_normalize_equal_torchvision(photos, pp):
    for name, img in _images(photos):
        crop = resize_crop_pil(img, pp)
        assert crop.dtype == np.uint8 and crop.shape == (224, 224, 3), name
        batch = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).contiguous()
        ours = normalize(batch, pp, torch.float32, channels_last=False)[0]
        diff = (ours - _torchvision(img, pp)).abs().max().item()
        assert diff <= 1e-6, (name, diff)


def test_normalize_dtype_and_memory_format():
    batch = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    pp = Preprocessing()
    x = normalize(batch, pp, torch.float16, channels_last=True)
    assert x.dtype == torch.float16 and x.shape == (2, 3, 8, 8)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    ref = (batch.float() / 255 - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(
        1, 3, 1, 1
    )
    assert torch.allclose(x.float(), ref, atol=2e-3)
    with pytest.raises(ValueError, match="uint8 NCHW"):
        normalize(batch.float(), pp, torch.float32, channels_last=False)
