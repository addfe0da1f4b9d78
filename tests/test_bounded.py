"""orchestrator.safeio.bounded: files and JSON documents read within bounds, refused in one line otherwise."""

import json
import os

import pytest

from orchestrator.safeio import bounded


def test_a_regular_file_within_its_bound_is_read(tmp_path):
    path = tmp_path / "r.json"
    path.write_bytes(b'{"a": [1, 2]}')
    assert bounded.load_file(str(path), 100) == {"a": [1, 2]}


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: os.symlink("/etc/hostname", p), "a symbolic link"),
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: p.write_bytes(b"x" * 101), "larger than 100 bytes"),
    ],
)
def test_links_special_files_and_large_files_are_refused_at_once(tmp_path, make, reason):
    path = tmp_path / "r.json"
    make(path)
    with pytest.raises(bounded.Refused, match=reason):
        bounded.read_regular(str(path), 100)


def test_dev_zero_is_refused_unread():
    with pytest.raises(bounded.Refused, match="not a regular file"):
        bounded.read_regular("/dev/zero", 100)


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]"])
def test_nan_and_infinity_are_refused(text):
    with pytest.raises(bounded.Refused, match="not a number JSON allows"):
        bounded.loads(text)


@pytest.mark.parametrize("levels", [33, 100_000])
def test_deep_documents_are_refused(levels):
    with pytest.raises(bounded.Refused, match="nested deeper than 32 levels"):
        bounded.loads("[" * levels + "]" * levels)


def test_a_document_at_the_bound_is_read():
    doc = json.loads("[" * 32 + "]" * 32)
    assert bounded.loads(json.dumps(doc)) == doc
    assert bounded.depth(doc) == 32


def test_not_json_is_one_line():
    with pytest.raises(bounded.Refused, match="^Expecting property name enclosed in double quotes"):
        bounded.loads("{'a': 1}\n\n")
