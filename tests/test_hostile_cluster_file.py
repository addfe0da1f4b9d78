"""Issue 18, items 6 and 7: a cluster file is read within bounds and every knob is checked at ``plan``.

Each hostile or careless file gives exit status 2 and one line naming the file and the field (or the line),
never a traceback, an endless read, or millions of jobs.
"""

import codecs
import json
import os
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from orchestrator import cli
from orchestrator.model.cluster import Cluster


def valid() -> Dict[str, Any]:
    return {
        "store": "s.sqlite",
        "hosts": [
            {
                "name": "here",
                "address": "local",
                "vendor": "cpu",
                "data": {"path": "val"},
                "weights": "random",
            },
        ],
        "cases": [{"case": "resnet50", "toolkit": "pytorch", "precision": "fp32", "batch_size": 4}],
    }


pytestmark = pytest.mark.usefixtures("keep_signal_handlers")  # cli.main installs its own handlers


def plan(path: Path, capsys) -> str:
    """``plan --cluster path``: its one error line (it must fail with status 2)."""
    status = cli.main(["plan", "--cluster", str(path)])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: %s" % path), err
    return err.strip()


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "hosts.yaml"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def with_case(**fields: Any) -> Dict[str, Any]:
    data = valid()
    data["cases"][0].update(fields)
    return data


# -- item 6: bounded reading --------------------------------------------------------------------------
def test_the_valid_file_plans(tmp_path, capsys):
    assert cli.main(["plan", "--cluster", str(write(tmp_path, valid()))]) == 0


def test_dev_zero_is_not_read(capsys):
    assert "error: /dev/zero: not a regular file" == plan(Path("/dev/zero"), capsys)


def test_a_huge_file_is_not_read(tmp_path, capsys):
    text = json.dumps(valid()) + "\n" + "# padding\n" * 200_000
    assert plan(write(tmp_path, text), capsys).endswith("larger than 1 MiB")


def test_a_fifo_is_refused_at_once(tmp_path, capsys):
    fifo = tmp_path / "cluster.yaml"
    os.mkfifo(fifo)
    assert plan(fifo, capsys).endswith("not a regular file")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_is_refused(tmp_path, capsys, encoding):
    assert plan(write(tmp_path, json.dumps(valid()).encode(encoding)), capsys).endswith(
        "is UTF-16; save it as UTF-8"
    )


def test_bytes_that_are_no_utf8_are_refused_with_their_offset(tmp_path, capsys):
    text = json.dumps(valid()).replace('"val"', '"v\xe9l"').encode("latin-1")
    assert "not UTF-8: byte 0xe9 at offset %d" % text.index(b"\xe9") in plan(write(tmp_path, text), capsys)


def test_a_nul_byte_in_the_file_is_refused_with_its_line(tmp_path, capsys):
    assert plan(write(tmp_path, b"store: s.sqlite\nresults_dir: r\x00\n"), capsys).endswith(
        "line 2 holds a NUL byte"
    )


@pytest.mark.parametrize("field", ["store", "results_dir"])
def test_a_nul_escape_in_a_value_is_refused_naming_the_field(tmp_path, capsys, field):
    text = json.dumps(dict(valid(), **{field: "a\0b"}))  # JSON writes it as \u0000, YAML reads a NUL
    assert plan(write(tmp_path, text), capsys).endswith("%s: a NUL byte in the value" % field)


def test_a_nul_escape_in_a_nested_value_is_refused_naming_the_field(tmp_path, capsys):
    data = valid()
    data["hosts"][0]["image"] = {"pip_index_url": "https://pypi.lab/\0simple"}
    assert plan(write(tmp_path, data), capsys).endswith(
        "hosts[0].image.pip_index_url: a NUL byte in the value"
    )


def test_deep_nesting_is_refused_without_recursion_error(tmp_path, capsys):
    text = "store: s.sqlite\nhosts: " + "[" * 50_000 + "]" * 50_000 + "\n"
    assert plan(write(tmp_path, text), capsys).endswith("line 2: nested deeper than 32 levels")


def test_a_repeated_key_is_refused(tmp_path, capsys):
    text = "store: a.sqlite\nstore: b.sqlite\n" + json.dumps(valid())[1:-1].replace(
        '"store": "s.sqlite", ', ""
    )
    text = "store: a.sqlite\nstore: b.sqlite\nhosts: %s\ncases: %s\n" % (
        json.dumps(valid()["hosts"]),
        json.dumps(valid()["cases"]),
    )
    assert plan(write(tmp_path, text), capsys).endswith("line 2: key 'store' is given twice")


def test_lists_that_multiply_into_millions_of_jobs_are_refused(tmp_path, capsys):
    data = with_case(batch_size=list(range(1, 1001)), precision=["fp32", "fp16", "bf16"])
    data["hosts"][0]["devices"] = [0, 1, 2, 3]
    assert "more than 10000 jobs" in plan(write(tmp_path, data), capsys)


def test_a_long_list_is_refused_at_once(tmp_path, capsys):
    """Issue 27 item 15: 65536 batch sizes took 80 s (a quadratic check of repeats); now every list is
    bounded, and the check is linear."""
    path = write(tmp_path, with_case(batch_size=list(range(1, 65537))))
    started = time.monotonic()
    line = plan(path, capsys)
    assert time.monotonic() - started < 10
    assert "cases[0].batch_size: has 65536 items; at most 1000 are allowed" in line


def test_an_alias_bomb_is_refused_while_it_is_composed(tmp_path, capsys):
    """Issue 27 item 15: nine lines that stand for 9**9 strings pinned a CPU for 35 minutes."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += ["a%d: &a%d [%s]" % (n, n, ",".join(["*a%d" % (n - 1)] * 9)) for n in range(1, 9)]
    started = time.monotonic()
    line = plan(write(tmp_path, "\n".join(lines) + "\n"), capsys)
    assert time.monotonic() - started < 1
    assert line.endswith(
        "line 6: with its aliases written out the data is larger than 2097152 values and "
        "characters (an alias repeated over and over?)"
    )


def test_aliases_within_bounds_still_work(tmp_path, capsys):
    text = "hosts: &h %s\ncases: %s\nstore: s.sqlite\nx_unused: *h\n" % (
        json.dumps(valid()["hosts"]),
        json.dumps(valid()["cases"]),
    )
    assert ":4: x_unused: unknown key (known: cases, defaults, hosts," in plan(write(tmp_path, text), capsys)


@pytest.mark.parametrize("where", ["defaults", "host"])
@pytest.mark.parametrize("value", [1e12, 10**12, 604801])
def test_a_timeout_longer_than_a_week_is_refused_naming_the_field(tmp_path, capsys, where, value):
    """Issue 27 item 15: ``timeouts.collect: 1e12`` passed, then the clock overflowed and lost the job."""
    data = valid()
    if where == "defaults":
        data["defaults"] = {"timeouts": {"collect": value}}
        field = "defaults.timeouts.collect"
    else:
        data["hosts"][0]["timeouts"] = {"collect": value}
        field = "hosts[0].timeouts.collect"
    line = plan(write(tmp_path, data), capsys)
    assert ": %s: must be at most 604800 (got %s)" % (field, value) in line


@pytest.mark.parametrize("field", ["toolkit", "precision", "batch_size"])
def test_a_repeated_list_item_is_refused_naming_the_field(tmp_path, capsys, field):
    value = {"toolkit": "pytorch", "precision": "fp32", "batch_size": 4}[field]
    line = plan(write(tmp_path, with_case(**{field: [value, value]})), capsys)
    assert "cases[0].%s: %r is listed twice in %s" % (field, value, field) in line


def test_two_entries_making_one_job_are_one_line(tmp_path, capsys):
    data = valid()
    data["cases"].append(dict(data["cases"][0]))
    line = plan(write(tmp_path, data), capsys)
    assert line.endswith(
        "cases[1]: makes the job of cases[0] again (host here, resnet50 pytorch fp32 batch size 4)"
    )


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_an_infinite_timeout_is_refused(tmp_path, capsys, value):
    text = "defaults: {timeouts: {run: %s}}\nhosts: %s\ncases: %s\n" % (
        value,
        json.dumps(valid()["hosts"]),
        json.dumps(valid()["cases"]),
    )
    assert "defaults.timeouts.run: must be a finite number (got " in plan(write(tmp_path, text), capsys)


# -- item 7: every knob checked at plan ------------------------------------------------------------------
@pytest.mark.parametrize("value", [True, [4, False]])
def test_a_boolean_batch_size_is_refused(tmp_path, capsys, value):
    assert "cases[0].batch_size" in plan(write(tmp_path, with_case(batch_size=value)), capsys)


def test_an_unknown_case_is_refused_at_plan(tmp_path, capsys):
    line = plan(write(tmp_path, with_case(case="resnet5O")), capsys)
    assert line.endswith("cases[0].case: unknown case 'resnet5O'; did you mean resnet50?")


def test_an_option_no_toolkit_of_the_entry_reads_is_refused(tmp_path, capsys):
    data = with_case(toolkit=["pytorch", "inductor"], toolkit_options={"inductor_mdoe": "max-autotune"})
    line = plan(write(tmp_path, data), capsys)
    assert "cases[0].toolkit_options.inductor_mdoe: no toolkit of this entry reads it" in line
    assert "inductor reads inductor_conv_1x1_as_mm, inductor_cudnn_benchmark" in line


def test_an_option_a_toolkit_reads_is_accepted(tmp_path, capsys):
    data = with_case(toolkit=["pytorch", "inductor"], toolkit_options={"inductor_mode": "max-autotune"})
    assert cli.main(["plan", "--cluster", str(write(tmp_path, data))]) == 0


def test_the_runners_own_hold_option_is_accepted_with_any_toolkit(tmp_path, capsys):
    data = with_case(toolkit=["pytorch", "onnxruntime"], toolkit_options={"hold_until": "release"})
    assert cli.main(["plan", "--cluster", str(write(tmp_path, data))]) == 0


def test_a_batch_larger_than_the_images_is_refused(tmp_path, capsys):
    data = with_case(batch_size=[4, 65536])
    data["hosts"][0]["data"]["max_images"] = 16
    line = plan(write(tmp_path, data), capsys)
    assert "cases[0].batch_size: 65536 is larger than the 16 images of host here (data.max_images)" in line


def test_run_says_why_every_case_was_skipped(tmp_path, capsys):
    path = write(tmp_path, with_case(toolkit="tensorrt"))
    status = cli.main(["run", "--cluster", str(path)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "no job to run, every case was skipped: here: vendor cpu has no toolkit tensorrt (has: " in err
    assert not (tmp_path / "s.sqlite").exists()


def test_utf8_with_a_byte_order_mark_is_fine(tmp_path, capsys):
    path = write(tmp_path, codecs.BOM_UTF8 + json.dumps(valid()).encode())
    assert cli.main(["plan", "--cluster", str(path)]) == 0


def test_docker_user_is_refused_at_plan_with_why(tmp_path, capsys):
    """Issue 27 item 16: a container user other than the login user could not write the job folder (the
    login user's) and failed only at the end of the job; the login user is the only one that works."""
    data = valid()
    data["hosts"][0]["docker"] = {"user": "1000:1000"}
    line = plan(write(tmp_path, data), capsys)
    assert line.endswith(
        "hosts[0].docker: user: the container runs as the host's login user, who owns the job "
        "folder; another user could not write its results there: remove docker.user (log in as that user "
        "instead)"
    )


def test_a_stored_cluster_with_docker_user_null_still_loads():
    """Runs stored before docker.user was refused hold ``user: null``: their --resume must still load."""
    data = valid()
    data["hosts"][0]["docker"] = {"user": None, "memory": "8g"}
    assert Cluster.model_validate(data).hosts[0].docker.memory == "8g"
