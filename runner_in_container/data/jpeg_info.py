"""JPEG frame headers read without decoding: which images a device JPEG decoder (nvJPEG) is given.

The device path takes what nvJPEG decodes in a batch like libjpeg does: 8-bit, sequential Huffman-coded
(baseline or extended), three YCbCr components. Everything else goes to the CPU path (PIL), image by image,
counted by the reason this module gives: CMYK/YCCK, grayscale, RGB-coded, 12-bit, arithmetic-coded, PNG
behind a ``.JPEG`` name, and progressive JPEGs, which nvJPEG can decode but torchvision then decodes one at a
time (host Huffman pass, two stream syncs) inside its decoder lock, stalling the whole batch, while the CPU
path's threads decode them in parallel. No torch here.
"""

from typing import NamedTuple, Optional

SOI = b"\xff\xd8"
#: start-of-frame markers the device decoder takes: baseline and extended sequential, Huffman-coded
SEQUENTIAL_FRAMES = (0xC0, 0xC1)
PROGRESSIVE = 0xC2
#: the other start-of-frame markers: lossless, hierarchical, arithmetic-coded
OTHER_FRAMES = (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
#: markers without a length field
STANDALONE = (0x01,) + tuple(range(0xD0, 0xD8))
SOS, EOI, APP14 = 0xDA, 0xD9, 0xEE
#: component ids 'R', 'G', 'B': libjpeg takes such a frame (without JFIF) as RGB-coded
RGB_IDS = (82, 71, 66)


class JpegHeader(NamedTuple):
    """What the frame header (and an Adobe APP14 segment before it) says."""

    marker: int  # the SOFn marker byte
    precision: int  # bits per sample
    height: int  # 0: given later in a DNL marker
    width: int
    component_ids: tuple
    adobe_transform: Optional[int]  # APP14 "Adobe" colour transform flag; None without that segment


def read_header(data: bytes) -> Optional[JpegHeader]:
    """The frame header of ``data``; None when it is not a JPEG or its scan comes before a frame header."""
    if data[:2] != SOI:
        return None
    pos, end = 2, len(data)
    adobe = None
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in STANDALONE:
            pos += 2
            continue
        if marker in (SOS, EOI):
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker in SEQUENTIAL_FRAMES or marker == PROGRESSIVE or marker in OTHER_FRAMES:
            count = data[pos + 9] if pos + 9 < end else 0
            if pos + 10 + 3 * count > end or count == 0:
                return None
            ids = tuple(data[pos + 10 + 3 * i] for i in range(count))
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            return JpegHeader(marker, data[pos + 4], height, width, ids, adobe)
        if marker == APP14 and length >= 12 and data[pos + 4 : pos + 9] == b"Adobe" and pos + 15 < end:
            adobe = data[pos + 15]
        if length < 2:
            return None
        pos += 2 + length
    return None


def cpu_reason(header: Optional[JpegHeader]) -> Optional[str]:
    """None when the device decoder takes an image with this header, else why the CPU path decodes it."""
    if header is None:
        return "not a JPEG"
    if header.marker == PROGRESSIVE:
        return "progressive JPEG"
    if header.marker not in SEQUENTIAL_FRAMES:
        return "lossless, hierarchical or arithmetic-coded JPEG"
    if header.precision != 8:
        return "JPEG with {}-bit samples".format(header.precision)
    count = len(header.component_ids)
    if count == 1:
        return "grayscale JPEG"
    if count == 4:
        return "CMYK or YCCK JPEG"
    if count != 3:
        return "JPEG with {} components".format(count)
    if header.adobe_transform == 0 or (header.adobe_transform is None and header.component_ids == RGB_IDS):
        return "RGB-coded JPEG (no YCbCr transform)"
    if header.height == 0 or header.width == 0:
        return "JPEG whose height follows in a DNL marker"
    return None
