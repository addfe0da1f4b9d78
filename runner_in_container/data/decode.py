"""Encoded image bytes -> RGB PIL image, whatever the file's real format and mode."""

import io

import numpy as np
from PIL import Image

from .errors import DataError

# Integer modes hold up to 16 significant bits (16-bit PNG, TIFF); scale them to 8 bits instead of
# clipping as Image.convert would.
_WIDE_INT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in _WIDE_INT_MODES:
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def decode_rgb(data: bytes, name: str) -> Image.Image:
    """Decode ``data`` (JPEG, PNG, ... by content, not by name) to an RGB image.

    CMYK, grayscale, palette and RGBA images are converted with ``Image.convert("RGB")``, as
    torchvision's ImageFolder loader does. Truncated or unreadable data -> DataError naming ``name``.
    """
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return _to_rgb(img)
    except Exception as e:  # PIL raises many types for bad data; all mean the same to the caller
        raise DataError(f"{name}: cannot decode image: {e}") from None
