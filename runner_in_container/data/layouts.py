"""Opening an ImageNet val copy in one of three layouts: imagefolder, flat folder, or the tar itself.

* ``imagefolder``: ``ROOT/<wnid>/*.JPEG`` (extract_ILSVRC.sh); ROOT may be ``val/`` or a folder holding
  ``val/``. Class index = position of the wnid among the sorted class directories, or among the sorted
  wnids of a synset file when ``labels`` names one. Samples sorted by (wnid, file name).
* ``flat``: the ``ILSVRC2012_img_val`` folder of ``ILSVRC2012_val_000NNNNN.JPEG``; labels from val.txt or
  LOC_val_solution.csv (see labels.py). Samples sorted by file name.
* ``tar``: ``ILSVRC2012_img_val.tar`` read in place (one header scan, then os.pread per image), same
  labels as ``flat``; optional MD5 check of the whole file. Samples sorted by member name.

``auto`` picks ``tar`` for a file, ``flat`` for a folder with image files in it and ``imagefolder`` for a
folder of folders. Only files with an image extension count (torchvision's list, any case); names
starting with a dot are skipped. A labels file may name images that are not there (a subset of val).
"""

import os
import tarfile
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..contract import DATASET_LAYOUTS
from .errors import DataError
from .labels import ImageLabels, read_image_labels, read_synsets, stem
from .tarfile_index import Member, index_members, md5_file, pread_exact, pread_into

#: ``reserve(n)``: a writable memoryview of n bytes that ``read_into`` fills
Reserve = Callable[[int], memoryview]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
OFFICIAL_VAL_TAR_MD5 = "29b22e2961454d5413ddabcf34fc5622"


class Sample(NamedTuple):
    """One image: path relative to the dataset root (or tar member name) and class index."""

    name: str
    label: int


class Dataset:
    """Samples of an opened dataset; ``read`` returns the encoded bytes of one (thread-safe)."""

    def __init__(
        self, root: str, layout: str, samples: List[Sample], labels_source: str, md5: Optional[str] = None
    ) -> None:
        self.root = root
        self.layout = layout
        self.samples = samples
        self.labels_source = labels_source
        self.md5 = md5  # the MD5 that was checked, or None

    def __len__(self) -> int:
        return len(self.samples)

    def location(self, index: int) -> str:
        """Where sample ``index`` is read from, for messages."""
        return os.path.join(self.root, self.samples[index].name)

    def read(self, index: int) -> bytes:
        path = self.location(index)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise DataError(f"{path}: cannot read: {e.strerror or e}") from None

    def read_into(self, index: int, reserve: Reserve) -> memoryview:
        """Sample ``index``'s bytes read into ``reserve(size)`` (no allocation per image); the view."""
        path = self.location(index)
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                return pread_into(fd, reserve(os.fstat(fd).st_size), 0, path)
            finally:
                os.close(fd)
        except OSError as e:
            raise DataError(f"{path}: cannot read: {e.strerror or e}") from None


class TarDataset(Dataset):
    """A dataset read in place from an uncompressed tar with os.pread."""

    def __init__(
        self, root: str, samples: List[Sample], members: List[Member], labels_source: str, md5: Optional[str]
    ) -> None:
        super().__init__(root, "tar", samples, labels_source, md5)
        self._members = members
        self._fd = -1  # so that __del__ is safe when open fails
        self._fd = os.open(root, os.O_RDONLY)

    def location(self, index: int) -> str:
        return f"{self.root}:{self.samples[index].name}"

    def read(self, index: int) -> bytes:
        member = self._members[index]
        return pread_exact(self._fd, member.size, member.offset, self.location(index))

    def read_into(self, index: int, reserve: Reserve) -> memoryview:
        member = self._members[index]
        return pread_into(self._fd, reserve(member.size), member.offset, self.location(index))

    def __getstate__(self) -> Dict[str, Any]:
        """What another process needs to reopen it (a file descriptor does not travel)."""
        state = dict(self.__dict__)
        state["_fd"] = -1
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fd = os.open(self.root, os.O_RDONLY)

    def close(self) -> None:
        """Close the tar file; ``read`` fails afterwards."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


class Subset(Dataset):
    """Samples ``indices`` of ``parent``, read through it (one decoding process's share of a set)."""

    def __init__(self, parent: Dataset, indices: Sequence[int]) -> None:
        samples = [parent.samples[i] for i in indices]
        super().__init__(parent.root, parent.layout, samples, parent.labels_source, parent.md5)
        self.parent = parent
        self.indices = list(indices)

    def location(self, index: int) -> str:
        return self.parent.location(self.indices[index])

    def read(self, index: int) -> bytes:
        return self.parent.read(self.indices[index])

    def read_into(self, index: int, reserve: Reserve) -> memoryview:
        return self.parent.read_into(self.indices[index], reserve)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith(".")


def _scan(folder: str) -> Tuple[List[str], List[str]]:
    """Sorted image file names and sorted sub-folder names of ``folder``."""
    images, dirs = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    dirs.append(entry.name)
                elif entry.is_file() and _is_image(entry.name):
                    images.append(entry.name)
    except OSError as e:
        raise DataError(f"{folder}: cannot list: {e.strerror or e}") from None
    return sorted(images), sorted(dirs)


def _limited(samples: List[Sample], limit: Optional[int]) -> List[Sample]:
    return samples if limit is None else samples[:limit]


def _open_imagefolder(root: str, dirs: List[str], labels: Optional[str], limit: Optional[int]) -> Dataset:
    if not dirs:
        raise DataError(f"{root}: no class directories (imagefolder layout: ROOT/<wnid>/*.JPEG)")
    if labels is None:
        order = dirs
        source = f"sorted dirs ({len(dirs)} classes)"
    else:
        order = read_synsets(labels)
        known = set(order)
        stray = [d for d in dirs if d not in known]
        if stray:
            raise DataError(f"{root}: class directory {stray[0]} is not in synset file {labels}")
        source = f"synset file {labels} ({len(order)} classes, {len(dirs)} directories)"
    index = {wnid: i for i, wnid in enumerate(order)}
    samples = [Sample(d + "/" + name, index[d]) for d in dirs for name in _scan(os.path.join(root, d))[0]]
    if not samples:
        raise DataError(f"{root}: no images in its {len(dirs)} class directories")
    return Dataset(root, "imagefolder", _limited(samples, limit), source)


def _image_labels(labels: Optional[str], where: str, layout: str) -> ImageLabels:
    if labels is None:
        raise DataError(f"{where}: the {layout} layout needs a labels file (val.txt or LOC_val_solution.csv)")
    return read_image_labels(labels)


def _labelled(names: Sequence[str], table: ImageLabels, prefix: str) -> Tuple[List[Sample], str]:
    """Samples for ``names`` (sorted) with their labels; every image needs one."""
    unlabelled = [n for n in names if stem(n) not in table.by_stem]
    if unlabelled:
        raise DataError(
            f"{prefix}{unlabelled[0]}: no label in {table.path} ({len(unlabelled)} unlabelled images in all)"
        )
    samples = [Sample(n, table.by_stem[stem(n)]) for n in sorted(names)]
    return samples, f"{table.source}; {len(samples)} of {len(table.by_stem)} labelled images present"


def _open_flat(root: str, images: List[str], labels: Optional[str], limit: Optional[int]) -> Dataset:
    if not images:
        raise DataError(f"{root}: no image files (flat layout: ILSVRC2012_val_000NNNNN.JPEG)")
    table = _image_labels(labels, root, "flat")
    samples, source = _labelled(images, table, root + os.sep)
    return Dataset(root, "flat", _limited(samples, limit), source)


def _open_tar(path: str, labels: Optional[str], md5: Optional[str], limit: Optional[int]) -> Dataset:
    if not tarfile.is_tarfile(path):
        raise DataError(f"{path}: is a file but not a tar archive")
    table = _image_labels(labels, path, "tar")
    checked = None
    if md5 is not None:
        checked = md5_file(path)
        if checked != md5.strip().lower():
            raise DataError(f"{path}: MD5 is {checked}, expected {md5}")
    members = {m.name: m for m in index_members(path) if _is_image(m.name)}
    if not members:
        raise DataError(f"{path}: no image members in the tar")
    samples, source = _labelled(list(members), table, path + ":")
    samples = _limited(samples, limit)
    return TarDataset(path, samples, [members[s.name] for s in samples], source, checked)


def _resolve_folder(path: str) -> Tuple[str, List[str], List[str]]:
    """The dataset folder (``path``, or ``path/val`` when that holds the data) and its scan."""
    images, dirs = _scan(path)
    if not images and "val" in dirs:
        path = os.path.join(path, "val")
        images, dirs = _scan(path)
    return path, images, dirs


def open_dataset(
    path: str,
    labels: Optional[str] = None,
    layout: str = "auto",
    md5: Optional[str] = None,
    limit: Optional[int] = None,
) -> Dataset:
    """Open the dataset at ``path``; DataError naming the file at fault if anything is wrong."""
    if layout != "auto" and layout not in DATASET_LAYOUTS:
        raise DataError(f"{path}: unknown layout {layout!r} (auto, {', '.join(DATASET_LAYOUTS)})")
    if limit is not None and limit < 1:
        raise DataError(f"{path}: limit must be at least 1, got {limit}")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or directory")
    if os.path.isfile(path):
        if layout not in ("auto", "tar"):
            raise DataError(f"{path}: is a file; the {layout} layout needs a folder")
        return _open_tar(path, labels, md5, limit)
    if layout == "tar":
        raise DataError(f"{path}: is a folder; the tar layout needs the .tar file")
    if md5 is not None:
        raise DataError(f"{path}: an MD5 check applies to the tar layout only")
    root, images, dirs = _resolve_folder(path)
    if layout == "flat" or (layout == "auto" and images):
        return _open_flat(root, images, labels, limit)
    return _open_imagefolder(root, dirs, labels, limit)
