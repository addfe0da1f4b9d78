"""Issue 30 item 4: a cluster file's problems told as people read them: every problem at once, one line each,
``file:line: field: plain words``, "did you mean" for unknown keys and names, ``address`` required."""

import re
from pathlib import Path
from typing import List

import pytest

from orchestrator import cli

GOOD = """\
store: s.sqlite
hosts:
  - name: gpu-1
    address: 198.18.0.2
    vendor: nvidia
    data: {path: /data/val}
    weights: random
  - name: here
    address: local
    vendor: cpu
    data: {path: val}
    weights: random
cases:
  - toolkit: pytorch
    precision: fp32
    batch_size: 8
    hosts: [gpu-1, here]
"""

#: what pydantic says and people should not have to read
PYDANTIC = ("Extra inputs", "Value error", "Input should", "batch_size.int", "list[int]", "more)", "<top>")


pytestmark = pytest.mark.usefixtures("keep_signal_handlers")  # cli.main installs its own handlers


def plan_errors(tmp_path: Path, text: str, capsys) -> List[str]:
    """``plan`` of ``text``: its error lines, without the ``error: FILE:`` each starts with (checked)."""
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    status = cli.main(["plan", "--cluster", str(path)])
    lines = capsys.readouterr().err.splitlines()
    assert status == 2 and lines, lines
    for line in lines:
        assert line.startswith("error: %s:" % path), line
        assert not any(word in line for word in PYDANTIC), line
    return [line[len("error: %s:" % path) :] for line in lines]


def replaced(text: str, *pairs: str) -> str:
    """``text`` with each (old, new) of ``pairs`` replaced once, each old there."""
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def edit(*pairs: str) -> str:
    return replaced(GOOD, *pairs)


def test_the_good_file_plans(tmp_path, capsys):
    (tmp_path / "hosts.yaml").write_text(GOOD)
    assert cli.main(["plan", "--cluster", str(tmp_path / "hosts.yaml")]) == 0


def test_a_typo_of_a_key_is_one_line_with_its_line_and_the_key_meant(tmp_path, capsys):
    assert plan_errors(tmp_path, edit("batch_size: 8", "batch_sise: 8"), capsys) == [
        "16: cases[0].batch_sise: unknown key; did you mean batch_size?"
    ]


def test_every_problem_is_told_at_once_in_the_order_of_the_file(tmp_path, capsys):
    text = edit(
        "    address: 198.18.0.2\n", "",
        "data: {path: /data/val}", "data: {path: /data/val, layuot: imagefolder}",
        "toolkit: pytorch", "toolkit: pytorh",
        "batch_size: 8", "batch_size: [8, many]",
        "    address: local\n", "    address: local\n    adress: local\n",
    )  # fmt: skip
    assert plan_errors(tmp_path, text, capsys) == [
        "3: hosts[0].address: required but not given: local (this machine), or a host name or IP address "
        "reached over SSH",
        "5: hosts[0].data.layuot: unknown key; did you mean layout?",
        "9: hosts[1].adress: unknown key; did you mean address?",
        "14: cases[0].toolkit: unknown toolkit 'pytorh'; did you mean pytorch?",
        "16: cases[0].batch_size[1]: must be a whole number (got 'many')",
    ]


@pytest.mark.parametrize(
    "old, new, line",
    [
        ("vendor: nvidia", "vendor: nvidai",
         "5: hosts[0].vendor: unknown vendor 'nvidai'; did you mean nvidia?"),
        ("vendor: nvidia", "vendor: acme", "5: hosts[0].vendor: unknown vendor 'acme' (known: cpu, "),
        ("store: s.sqlite", "launcher: slrum", "1: launcher: unknown launcher 'slrum'; did you mean slurm?"),
        ("hosts: [gpu-1, here]", "hosts: [gpu-l, here]",
         "17: cases[0].hosts[0]: unknown host 'gpu-l'; did you mean gpu-1?"),
        ("precision: fp32", "precision: fp23",
         "15: cases[0].precision: unknown precision 'fp23'; did you mean "),
        ("toolkit: pytorch", "case: resnet5O\n    toolkit: pytorch",
         "14: cases[0].case: unknown case 'resnet5O'; did you mean resnet50?"),
        ("data: {path: val}", "data: {path: val}\n    timeouts: {biuld: 60}",
         "12: hosts[1].timeouts.biuld: unknown key; did you mean build?"),
        ("store: s.sqlite", "store: s.sqlite\ndefualts: {}",
         "2: defualts: unknown key; did you mean defaults?"),
        ("batch_size: 8", "batch_size: yes",
         "16: cases[0].batch_size: must be a whole number or a list (got True)"),
        ("batch_size: 8", "batch_size: 0", "16: cases[0].batch_size: must be in 1..65536, got 0"),
        ("data: {path: val}", "data: {path: val, layout: imagefolders}",
         "11: hosts[1].data.layout: must be one of auto, imagefolder, flat, tar (got 'imagefolders'); "
         "did you mean imagefolder?"),
        ("vendor: cpu", "vendor: cpu\n    mps: ato",
         "11: hosts[1].mps: must be true or false or auto (got 'ato'); did you mean auto?"),
        ("vendor: cpu", "vendor: cpu\n    devices: 0", "11: hosts[1].devices: must be a list (got 0)"),
        ("batch_size: 8", "batch_size: [8, 8]", "16: cases[0].batch_size: 8 is listed twice in batch_size"),
    ],
)  # fmt: skip
def test_each_problem_is_in_plain_words(tmp_path, capsys, old, new, line):
    lines = plan_errors(tmp_path, edit(old, new), capsys)
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_address_is_required_never_assumed_local(tmp_path, capsys):
    (line,) = plan_errors(tmp_path, edit("    address: local\n", ""), capsys)
    assert re.match(r"^8: hosts\[1\]\.address: required but not given: local \(this machine\)", line), line


def test_the_shipped_cluster_files_say_each_hosts_address():
    for path in sorted(Path(__file__).resolve().parent.parent.glob("host_configs/*.yaml")):
        text = path.read_text()
        assert text.count("address:") >= text.count("  - name:") > 0, path
