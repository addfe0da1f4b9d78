"""Issue 30 item 5: progress that shows life. Piped: a line per stage and pass, per ended job (with jobs done
of all), and a heartbeat of the busy rows however quiet the run; on a terminal: elapsed times, the ended jobs
kept with their figure, the build's last log line and its log's path."""

import io
import time
from typing import List

from rich.console import Console

from orchestrator.run.display import ProgressBoard, clock


def _wait_for(capsys, text: str, seen: List[str], deadline_s: float = 10.0) -> None:
    """Read stderr into ``seen`` until a line holds ``text`` (AssertionError at the deadline)."""
    deadline = time.monotonic() + deadline_s
    while not any(text in line for line in seen):
        assert time.monotonic() < deadline, "no %r in %s" % (text, seen)
        seen.extend(capsys.readouterr().err.splitlines())
        time.sleep(0.01)


def _feed(board: ProgressBoard) -> None:
    board.update("gpu-1", -1, {"stage": "build", "note": "", "log": "/r/host-gpu-1/build.log"})
    board.update("gpu-1", -1, {"note": "Step 3/9 : RUN pip install onnxruntime"})
    board.update("gpu-1", 0, {"stage": "start", "job": "gpu-1.d0.bs8", "note": ""})
    board.update("gpu-1", 0, {"stage": "infer", "step": "pass 1", "note": "400/1000 980 img/s"})
    board.update("gpu-1", 0, {"stage": "infer", "step": "pass 2", "note": "1000/1000 990 img/s"})
    board.update("gpu-1", 0, {"figure": "infer 985.2 img/s"})
    board.update("gpu-1", 0, {"stage": "OK", "note": ""})
    board.update("gpu-1", 1, {"stage": "run", "job": "gpu-1.d1.bs8", "note": "12/1000"})


def test_piped_output_has_a_line_per_pass_each_ended_job_and_a_heartbeat(capsys):
    seen: List[str] = []
    with ProgressBoard(total=3, console=Console(file=io.StringIO()), heartbeat_s=0.05) as board:
        _feed(board)
        _wait_for(capsys, "1/3 jobs done, ", seen)  # the heartbeat, with nothing new to say
        _wait_for(capsys, "gpu-1/dev1", seen)
    seen.extend(capsys.readouterr().err.splitlines())
    said = "\n".join(seen)
    assert "gpu-1              build  (log /r/host-gpu-1/build.log)" in said
    assert "infer pass 1 gpu-1.d0.bs8  400/1000 980 img/s" in said
    assert "infer pass 2 gpu-1.d0.bs8  1000/1000 990 img/s" in said
    ended = [line for line in seen if " OK gpu-1.d0.bs8 " in line]
    assert ended and "infer 985.2 img/s" in ended[0] and ended[0].endswith("[1/3 jobs done]"), ended
    beat = next(line for line in seen if "jobs done, " in line)
    assert "elapsed, about " in beat and beat.endswith(" left")
    busy = [line for line in seen if "gpu-1/dev1" in line and "12/1000" in line]
    assert len(busy) >= 2  # its stage's line, then the heartbeat's
    assert not any("gpu-1/dev0" in line and "OK" in line for line in seen[seen.index(beat) :])  # ended: quiet


def test_the_live_table_keeps_ended_jobs_and_shows_times_and_the_build_log():
    out = io.StringIO()
    board = ProgressBoard(total=2, console=Console(file=out, force_terminal=True, width=200))
    _feed(board)
    board.update("gpu-1", 1, {"stage": "FAILED_RUN", "note": "exit status 137: killed (docker.memory)"})
    Console(file=out, width=200).print(board._table())
    text = out.getvalue()
    assert "rn50bench: 2/2 jobs done, " in text
    assert "Step 3/9 : RUN pip install onnxruntime (log /r/host-gpu-1/build.log)" in text
    rows = [line for line in text.splitlines() if "gpu-1.d0.bs8" in line]
    assert any("OK" in row and "infer 985.2 img/s" in row for row in rows), rows
    failed = [line for line in text.splitlines() if "FAILED_RUN" in line and "gpu-1.d1.bs8" in line]
    assert len(failed) == 2 and "killed (docker.memory)" in failed[-1]  # its row, and kept as ended
    assert text.count("ended") == 1


def test_clock():
    assert [clock(s) for s in (0, 42.9, 185, 3725, -1)] == ["0s", "42s", "3m 05s", "1h 02m", "0s"]
