"""A hostile stand-in for ``python3 -m runner_in_container``: it does what a hostile runner, image or bare
host's Python could do to the orchestrator, as the test asks.

It runs wherever the real runner would (a bare host's ``python:`` names a wrapper that runs it; in the
hostile image ``python3`` does), takes the runner's argv and ignores all of it but ``--out`` (where
result.json goes) and ``--data``: the test puts ``hostile.json`` in the data folder, e.g.
``{"mode": "result_symlink", "target": "/etc/shadow"}``. Every mode first says ``start`` as the real runner
does; most end by writing ``doc`` (any JSON, as given), ``raw`` (text) or ``raw_b64`` (bytes) as result.json
when the test gives one, and exit with ``exit`` (default 0). Standard library only, Python 3.8.
"""

import base64
import json
import os
import sys
import time

#: the file in the data folder that chooses the behaviour
CHOICE = "hostile.json"
_CHUNK = 1 << 20


def option(argv, flag):
    """The value of ``flag`` in the runner's argv (``--flag VALUE``), or None."""
    for index, item in enumerate(argv[:-1]):
        if item == flag:
            return argv[index + 1]
    return None


def say(ev, **fields):
    """One progress event on stdout, as the real runner writes it."""
    record = {"ev": ev, "t": 0.0}
    record.update(fields)
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def finish(spec, out):
    """Write the test's ``doc`` (JSON), ``raw`` (text, UTF-8) or ``raw_b64`` (bytes, base64) as result.json
    when it gave one; the exit status it asked for."""
    if "doc" in spec:
        data = json.dumps(spec["doc"]).encode()
    elif "raw" in spec:
        data = spec["raw"].encode()
    elif "raw_b64" in spec:
        data = base64.b64decode(spec["raw_b64"])
    else:
        return int(spec.get("exit", 0))
    with open(os.path.join(out, "result.json"), "wb") as handle:
        handle.write(data)
    return int(spec.get("exit", 0))


# -- modes: each takes the test's spec and the output folder, returns the exit status ----------------
def write_result(spec, out):
    """result.json is exactly ``doc`` (or ``raw``)."""
    return finish(spec, out)


def result_symlink(spec, out):
    """result.json is a symbolic link to ``target`` (a root-only file, /dev/zero, ...)."""
    os.symlink(spec["target"], os.path.join(out, "result.json"))
    return int(spec.get("exit", 0))


def result_fifo(spec, out):
    """result.json is a FIFO that nobody writes."""
    os.mkfifo(os.path.join(out, "result.json"))
    return int(spec.get("exit", 0))


def big_result(spec, out):
    """result.json is ``size`` bytes: a sparse file, all zero bytes, cheap to make."""
    with open(os.path.join(out, "result.json"), "wb") as handle:
        handle.truncate(int(spec["size"]))
    return int(spec.get("exit", 0))


def long_line(spec, out):
    """One stdout line of ``size`` bytes (written in pieces, one line break at its end)."""
    left = int(spec["size"])
    piece = b"x" * _CHUNK
    while left > 0:
        sys.stdout.buffer.write(piece[: min(left, _CHUNK)])
        left -= _CHUNK
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    return finish(spec, out)


def event_flood(spec, out):
    """``count`` progress events as fast as stdout takes them."""
    line = json.dumps({"ev": "progress", "t": 0.0, "stage": "infer", "images_done": 1, "images_total": 2})
    block = (line + "\n") * 1000
    count = int(spec["count"])
    for _ in range(count // 1000):
        sys.stdout.write(block)
    sys.stdout.write((line + "\n") * (count % 1000))
    sys.stdout.flush()
    return finish(spec, out)


def bad_events(spec, out):
    """Events whose fields have the wrong type or are missing: each is one line of ``events``, as given."""
    for event in spec["events"]:
        sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()
    return finish(spec, out)


def fork_holding_stdout(spec, out):
    """A child that keeps stdout and stderr open for ``seconds`` (its pid in ``child.pid`` in the output
    folder); the runner itself ends at once."""
    child = os.fork()
    if child == 0:
        time.sleep(float(spec.get("seconds", 3600)))
        os._exit(0)
    with open(os.path.join(out, "child.pid"), "w") as handle:
        handle.write("%d\n" % child)
    return finish(spec, out)


MODES = {
    function.__name__: function
    for function in (
        write_result, result_symlink, result_fifo, big_result, long_line, event_flood, bad_events,
        fork_holding_stdout,
    )
}  # fmt: skip


def main(argv):
    out, data = option(argv, "--out"), option(argv, "--data")
    if out is None or data is None:
        sys.stderr.write("error: hostile runner: --out and --data are required\n")
        return 2
    with open(os.path.join(data, CHOICE)) as handle:
        spec = json.load(handle)
    os.makedirs(out, exist_ok=True)
    say("start")
    return MODES[spec["mode"]](spec, out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
