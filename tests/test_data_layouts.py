"""open_dataset: the three layouts, auto-detection, labels files and class order, tar reads, errors."""

import csv
import hashlib
import os
import shutil
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from runner_in_container.data import DataError, open_dataset
from runner_in_container.data.generate import generate, labels_path
from runner_in_container.data.layouts import OFFICIAL_VAL_TAR_MD5

SMALL = (40, 30)


def _val_txt(real_data: Path) -> Dict[str, int]:
    lines = (real_data / "imagenet_labels" / "val.txt").read_text().split("\n")
    return {name: int(index) for name, index in (line.split() for line in lines if line)}


def _wnids(real_data: Path) -> List[str]:
    return [
        line.split()[0]
        for line in (real_data / "imagenet_labels" / "synset_words.txt").read_text().splitlines()
    ]


def _real_flat(real_data: Path) -> Path:
    return real_data / "imagenet_val_sample" / "ILSVRC2012_img_val"


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Dict[str, Tuple[str, str]]:
    """A tiny generated set per layout: layout -> (dataset path, labels path)."""
    root = tmp_path_factory.mktemp("sets")
    out = {}
    for layout in ("imagefolder", "flat", "tar"):
        path = generate(str(root / layout), 23, layout=layout, seed=3, size=SMALL)
        out[layout] = (path, labels_path(str(root / layout), layout))
    return out


@pytest.fixture
def real_imagefolder(tmp_path, real_data) -> Path:
    """The 630 real images linked into ROOT/val/<wnid>/ as extract_ILSVRC.sh lays them out."""
    labels, wnids = _val_txt(real_data), _wnids(real_data)
    for image in _real_flat(real_data).iterdir():
        folder = tmp_path / "val" / wnids[labels[image.name]]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / image.name).symlink_to(image)
    return tmp_path


def test_auto_detects_each_layout(sets):
    for layout, (path, labels) in sets.items():
        ds = open_dataset(path, None if layout == "imagefolder" else labels)
        assert ds.layout == layout
        assert len(ds.samples) == 23
        assert ds.md5 is None


def test_imagefolder_root_may_hold_val(sets):
    path, _ = sets["imagefolder"]
    assert os.path.basename(path) == "val"
    parent = open_dataset(os.path.dirname(path))
    assert parent.root == path
    assert parent.samples == open_dataset(path).samples


def test_forced_layouts(sets):
    flat, flat_labels = sets["flat"]
    folder, _ = sets["imagefolder"]
    tar, tar_labels = sets["tar"]
    assert open_dataset(flat, flat_labels, layout="flat").layout == "flat"
    assert open_dataset(folder, layout="imagefolder").layout == "imagefolder"
    assert open_dataset(tar, tar_labels, layout="tar").layout == "tar"
    with pytest.raises(DataError, match="no class directories"):
        open_dataset(flat, flat_labels, layout="imagefolder")
    with pytest.raises(DataError, match="no image files"):
        open_dataset(folder, flat_labels, layout="flat")
    with pytest.raises(DataError, match="is a folder; the tar layout"):
        open_dataset(flat, flat_labels, layout="tar")
    with pytest.raises(DataError, match="is a file; the flat layout"):
        open_dataset(tar, tar_labels, layout="flat")
    with pytest.raises(DataError, match="unknown layout 'zip'"):
        open_dataset(flat, flat_labels, layout="zip")


def test_imagefolder_class_index_is_sorted_wnid_position(sets):
    path, synsets = sets["imagefolder"]
    plain, with_synsets = open_dataset(path), open_dataset(path, synsets)
    assert plain.labels_source == "sorted dirs (1000 classes)"
    assert with_synsets.labels_source.startswith("synset file " + synsets)
    assert plain.samples == with_synsets.samples
    keys = [tuple(s.name.split("/")) for s in plain.samples]
    assert keys == sorted(keys)
    for sample in plain.samples:
        assert sample.label == int(sample.name.split("/")[0][2:])  # n9 + 7-digit index


def test_flat_and_tar_samples_sorted_by_name_with_val_txt_labels(sets):
    for layout in ("flat", "tar"):
        path, labels = sets[layout]
        expected = dict(line.split() for line in Path(labels).read_text().splitlines())
        ds = open_dataset(path, labels)
        assert [s.name for s in ds.samples] == sorted(expected)
        assert all(s.label == int(expected[s.name]) for s in ds.samples)
        assert "23 of 23 labelled images present" in ds.labels_source


def test_real_flat_with_val_txt(real_data):
    val = real_data / "imagenet_labels" / "val.txt"
    ds = open_dataset(str(_real_flat(real_data)), str(val))
    assert ds.layout == "flat" and len(ds.samples) == 630
    assert "630 of 50000 labelled images present" in ds.labels_source
    lines = val.read_text().splitlines()
    for sample in ds.samples[::97]:
        number = int(sample.name[len("ILSVRC2012_val_") : -len(".JPEG")])
        name, index = lines[number - 1].split()  # val.txt line N is image N
        assert (sample.name, sample.label) == (name, int(index))
    assert ds.samples[0].name == "ILSVRC2012_val_00000556.JPEG"
    assert ds.read(0) == (_real_flat(real_data) / ds.samples[0].name).read_bytes()


def test_real_imagefolder_with_synset_file_matches_val_txt(real_data, real_imagefolder):
    flat = open_dataset(str(_real_flat(real_data)), str(real_data / "imagenet_labels" / "val.txt"))
    synsets = str(real_data / "imagenet_labels" / "synset_words.txt")
    folder = open_dataset(str(real_imagefolder), synsets)
    assert folder.layout == "imagefolder"
    assert sorted((s.name.split("/")[1], s.label) for s in folder.samples) == sorted(flat.samples)
    # Without the synset file only the classes present count, and the source says so.
    dirs_only = open_dataset(str(real_imagefolder))
    classes = len(os.listdir(real_imagefolder / "val"))
    assert classes < 1000
    assert dirs_only.labels_source == f"sorted dirs ({classes} classes)"
    assert max(s.label for s in dirs_only.samples) == classes - 1


def test_imagefolder_dir_missing_from_synset_file(real_data, real_imagefolder):
    (real_imagefolder / "val" / "n99999999").mkdir()
    synsets = str(real_data / "imagenet_labels" / "synset_words.txt")
    with pytest.raises(DataError, match="class directory n99999999 is not in synset file .*synset_words.txt"):
        open_dataset(str(real_imagefolder), synsets)


def test_imagefolder_rejects_per_image_labels(sets, real_data):
    with pytest.raises(DataError, match=r"val\.txt: not a synset file"):
        open_dataset(sets["imagefolder"][0], str(real_data / "imagenet_labels" / "val.txt"))


def _solution_csv(path: Path, names: List[str], labels: Dict[str, int], wnids: List[str]) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["ImageId", "PredictionString"])
        for name in names:
            out.writerow(
                [name[: -len(".JPEG")], f"{wnids[labels[name]]} 1 2 30 40 {wnids[labels[name]]} 5 6 70 80"]
            )


def test_kaggle_csv_with_synset_mapping(tmp_path, real_data):
    labels, wnids = _val_txt(real_data), _wnids(real_data)
    flat = _real_flat(real_data)
    names = sorted(os.listdir(flat))
    _solution_csv(tmp_path / "LOC_val_solution.csv", names[::-1], labels, wnids)
    shutil.copy(real_data / "imagenet_labels" / "synset_words.txt", tmp_path / "LOC_synset_mapping.txt")
    ds = open_dataset(str(flat), str(tmp_path / "LOC_val_solution.csv"))
    assert ds.samples == open_dataset(str(flat), str(real_data / "imagenet_labels" / "val.txt")).samples
    assert "LOC_synset_mapping.txt" in ds.labels_source


def test_kaggle_csv_without_mapping(tmp_path, real_data):
    labels, wnids = _val_txt(real_data), _wnids(real_data)
    flat = _real_flat(real_data)
    few = tmp_path / "few" / "LOC_val_solution.csv"
    few.parent.mkdir()
    _solution_csv(few, sorted(os.listdir(flat)), labels, wnids)
    with pytest.raises(
        DataError, match=r"LOC_val_solution\.csv: names \d+ wnids, not 1000.*LOC_synset_mapping"
    ):
        open_dataset(str(flat), str(few))
    full = (
        tmp_path / "LOC_val_solution.csv"
    )  # all 50,000 rows name all 1000 wnids: their sorted order is used
    _solution_csv(full, sorted(labels), labels, wnids)
    ds = open_dataset(str(flat), str(full))
    assert ds.samples == open_dataset(str(flat), str(real_data / "imagenet_labels" / "val.txt")).samples
    assert "sorted wnids" in ds.labels_source


def test_devkit_ground_truth_is_rejected_with_a_pointer(tmp_path, sets):
    truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("490\n361\n171\n")
    with pytest.raises(DataError, match=r"ground_truth\.txt: .*meta\.mat.*use val\.txt"):
        open_dataset(sets["flat"][0], str(truth))


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "ILSVRC2012_val_00000001.JPEG 3\nILSVRC2012_val_00000002.JPEG 4\nILSVRC2012_val_00000003.JPEG\n",
            r"labels\.txt line 3: expected '<file name> <class index>'",
        ),
        (
            "ILSVRC2012_val_00000001.JPEG 3\n\nILSVRC2012_val_00000001.JPEG 4\n",
            r"labels\.txt line 3: ILSVRC2012_val_00000001 is labelled twice",
        ),
        ("\n\n", r"labels\.txt: labels file is empty"),
        (
            "ImageId,PredictionString\nILSVRC2012_val_00000001,dog 1 2 3 4\n",
            r"labels\.txt line 2: expected 'ImageId,<wnid> \.\.\.'",
        ),
    ],
)
def test_bad_labels_files_name_file_and_line(tmp_path, sets, text, message):
    bad = tmp_path / "labels.txt"
    bad.write_text(text)
    with pytest.raises(DataError, match=message):
        open_dataset(sets["flat"][0], str(bad))


def test_image_without_label_is_named(tmp_path, sets):
    path, labels = sets["flat"]
    partial = tmp_path / "partial.txt"
    partial.write_text("".join(Path(labels).read_text().splitlines(True)[:-2]))
    with pytest.raises(
        DataError, match=r"ILSVRC2012_val_00000022\.JPEG: no label in .*partial\.txt \(2 unlabelled"
    ):
        open_dataset(path, str(partial))
    tar, _ = sets["tar"]
    with pytest.raises(DataError, match=r"\.tar:ILSVRC2012_val_00000022\.JPEG: no label"):
        open_dataset(tar, str(partial))


def test_missing_and_empty_inputs(tmp_path, sets):
    with pytest.raises(DataError, match="nowhere: no such file or directory"):
        open_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no class directories"):
        open_dataset(str(tmp_path / "empty"))
    (tmp_path / "classes" / "n01440764").mkdir(parents=True)
    with pytest.raises(DataError, match="classes: no images in its 1 class directories"):
        open_dataset(str(tmp_path / "classes"))
    with pytest.raises(DataError, match="missing.txt: labels file not found"):
        open_dataset(sets["flat"][0], str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="the flat layout needs a labels file"):
        open_dataset(sets["flat"][0])
    with pytest.raises(DataError, match="the tar layout needs a labels file"):
        open_dataset(sets["tar"][0])


def test_limit_keeps_first_n(sets):
    path, labels = sets["tar"]
    full = open_dataset(path, labels)
    five = open_dataset(path, labels, limit=5)
    assert five.samples == full.samples[:5]
    assert [five.read(i) for i in range(5)] == [full.read(i) for i in range(5)]
    assert open_dataset(path, labels, limit=1000).samples == full.samples
    with pytest.raises(DataError, match="limit must be at least 1, got 0"):
        open_dataset(path, labels, limit=0)


def test_tar_pread_reads_the_member_bytes(sets):
    path, labels = sets["tar"]
    ds = open_dataset(path, labels)
    with tarfile.open(path) as tar:
        expected = [tar.extractfile(s.name).read() for s in ds.samples]
    assert [ds.read(i) for i in range(len(ds.samples))] == expected
    with ThreadPoolExecutor(4) as pool:  # concurrent reads share one descriptor
        assert list(pool.map(ds.read, list(range(len(ds.samples))) * 4)) == expected * 4
    assert ds.location(0) == path + ":" + ds.samples[0].name


@pytest.mark.parametrize("layout", ["imagefolder", "flat", "tar"])
def test_read_into_fills_one_shared_buffer_with_the_same_bytes(sets, layout):
    ds = open_dataset(*sets[layout])
    buffer, used = bytearray(1 << 20), [0]

    def reserve(size: int) -> memoryview:
        used[0] += size
        return memoryview(buffer)[used[0] - size : used[0]]

    views = [ds.read_into(i, reserve) for i in range(len(ds.samples))]
    assert [v.tobytes() for v in views] == [ds.read(i) for i in range(len(ds.samples))]
    assert used[0] == sum(len(v) for v in views)


def test_tar_md5_match_and_mismatch(sets):
    path, labels = sets["tar"]
    digest = hashlib.md5(Path(path).read_bytes()).hexdigest()
    assert open_dataset(path, labels, md5=digest.upper()).md5 == digest
    with pytest.raises(DataError) as err:
        open_dataset(path, labels, md5=OFFICIAL_VAL_TAR_MD5)
    assert str(err.value) == f"{path}: MD5 is {digest}, expected {OFFICIAL_VAL_TAR_MD5}"
    with pytest.raises(DataError, match="MD5 check applies to the tar layout only"):
        open_dataset(sets["flat"][0], sets["flat"][1], md5=digest)


def test_real_images_in_a_tar(tmp_path, real_data):
    flat = open_dataset(str(_real_flat(real_data)), str(real_data / "imagenet_labels" / "val.txt"), limit=40)
    tar_path = tmp_path / "ILSVRC2012_img_val.tar"
    with tarfile.open(tar_path, "w") as tar:
        for sample in reversed(flat.samples):
            tar.add(str(_real_flat(real_data) / sample.name), arcname=sample.name)
    ds = open_dataset(str(tar_path), str(real_data / "imagenet_labels" / "val.txt"))
    assert ds.samples == flat.samples
    assert all(ds.read(i) == flat.read(i) for i in range(40))


def test_bad_tar_files(tmp_path, sets):
    path, labels = sets["tar"]
    gz = tmp_path / "val.tar.gz"
    with tarfile.open(gz, "w:gz") as tar:
        tar.add(path, arcname="x.JPEG")
    with pytest.raises(DataError, match=r"val\.tar\.gz: cannot read tar headers .*uncompressed"):
        open_dataset(str(gz), labels)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt: is a file but not a tar archive"):
        open_dataset(str(text), labels)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(Path(path).read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(DataError, match=r"cut\.tar: cannot read tar headers \(unexpected end of data\)"):
        open_dataset(str(cut), labels)


def test_read_failure_names_the_file(tmp_path, sets):
    src, labels = sets["flat"]
    copy = tmp_path / "flat"
    shutil.copytree(src, copy)
    ds = open_dataset(str(copy), labels)
    (copy / ds.samples[4].name).unlink()
    with pytest.raises(DataError, match=r"flat/ILSVRC2012_val_\d{8}\.JPEG: cannot read"):
        ds.read(4)
    with pytest.raises(DataError, match=r"flat/ILSVRC2012_val_\d{8}\.JPEG: cannot read"):
        ds.read_into(4, lambda size: memoryview(bytearray(size)))
