"""Issue 30 item 4: a run's errors told once per host and cause, with the exact command that resumes it."""

import re
import shlex
from pathlib import Path

from tests.test_faults import CASE, only_run, orchestrator, write_cluster
from tests.test_hostile_paths import bare_entry


def test_a_wrong_data_path_is_told_once_for_the_host_with_the_resume_command(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-set"
    host = bare_entry(missing, tmp_path / "work")
    cases = [dict(CASE, batch_size=[1, 2, 4, 8])]
    path = write_cluster(tmp_path / "hosts.yaml", tmp_path, [host], cases=cases)
    done = orchestrator("run", "--cluster", str(path), timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    (line,) = errors  # not one per job
    said = r"error: host here, 4 jobs \(here\.d0\.\S+, here\.\S+, here\.\S+ and 1 more\): FAILED_START: "
    said += "data.path %s does not exist on host here" % re.escape(str(missing))
    assert re.fullmatch(said, line), line
    assert "[4/4 jobs done]" in done.stderr  # the progress lines count the jobs that ended
    assert done.stderr.count("does not exist on host here") == 2  # the first job's line, and the summary
    assert done.stderr.count("FAILED_START here.d0.") == 4 and "the same reason as above" in done.stderr
    run_id = only_run(tmp_path / "store.sqlite")["run_id"]
    (said,) = [line for line in done.stderr.splitlines() if "did not finish OK" in line]
    command = said.split("rerun them with: ", 1)[1]
    assert shlex.split(command) == [
        "python", "-m", "orchestrator", "run", "--resume", run_id,
        "--cluster", str(path.resolve()), "--store", str(tmp_path / "store.sqlite"),
    ]  # fmt: skip
    again = orchestrator(*shlex.split(command)[3:], timeout=120)
    assert "resuming run %s: 4 of 4 jobs to run" % run_id in again.stdout, again.stderr[-2000:]
