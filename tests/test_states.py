"""Stage names and job states are one vocabulary: defined once, stored unchanged, never written bare."""

import ast
import sqlite3
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest

from orchestrator.outcome import UNREADABLE, JobState, RunState, Stage
from orchestrator.store import Store, new_run_id
from runner_in_container import protocol

REPO = Path(__file__).resolve().parent.parent

#: what stores written by every earlier version hold: a value here never changes, or old stores misread
STORED_JOB_STATES = {
    "PENDING", "RUNNING", "OK", "CANCELLED", "FAILED_CONNECT", "FAILED_BUILD", "FAILED_START", "FAILED_RUN",
    "FAILED_COLLECT", "FAILED_VALIDATE", "FAILED_ACCURACY", "FAILED_ISOLATION",
}  # fmt: skip
STORED_RUN_STATES = {"RUNNING", "finished", "interrupted"}

#: words of the vocabulary -> the one module allowed to spell them
CONTROL_WORDS = {v.value: "orchestrator/outcome.py" for v in (*JobState, *RunState)}
CONTROL_WORDS[UNREADABLE] = "orchestrator/outcome.py"
RUNNER_WORDS = dict.fromkeys(
    protocol.STATUSES + (protocol.STAGE_SETUP,) + protocol.PASS_STAGES, "runner_in_container/protocol.py"
)
#: the same spelling with another meaning, where it is meant: (file or folder, word) -> what it is there
OTHER_MEANINGS = {
    ("orchestrator/launchers/slurm.py", "RUNNING"): "a Slurm job state, Slurm's own word",
    ("orchestrator/launchers/slurmctl.py", "CANCELLED"): "a Slurm job state, Slurm's own word",
    ("orchestrator/cli.py", "ok"): "the runs table's column counting the jobs that ended OK",
    ("orchestrator/report/htmlreport.py", "finished"): "the report's label of the run's end time",
    ("orchestrator/report/labels.py", "failed"): "the report's heading of the failed jobs",
    ("runner_in_container/data/", "val"): "ImageNet's folder of validation images",
    ("bench/", "val"): "ImageNet's folder of validation images",
    ("bench/", "ok"): "the bench's own row status",
}
SOURCES = ("orchestrator", "runner_in_container", "bench", "vendors")


def _strings(path: Path) -> Iterator[Tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _other_meaning(rel: str, word: str) -> bool:
    return any(rel.startswith(where) and word == known for where, known in OTHER_MEANINGS)


def _sources() -> Iterator[Tuple[str, Path]]:
    for root in SOURCES:
        for path in sorted((REPO / root).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), path


def test_no_state_or_stage_word_is_written_bare():
    words: Dict[str, str] = {**RUNNER_WORDS, **CONTROL_WORDS}
    bare = []
    for rel, path in _sources():
        for line, text in _strings(path):
            home = words.get(text, "orchestrator/outcome.py" if text.startswith("FAILED_") else None)
            if home is not None and rel != home and not _other_meaning(rel, text):
                bare.append("%s:%d: %r (use %s)" % (rel, line, text, home))
    assert bare == []


def test_stages_are_named_by_the_vocabulary_where_a_job_fails_or_shows_one():
    """StageFailure(...), stage_errors(...) and say(stage=...) take a Stage, never a string."""
    bare = []
    for rel, path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            given = [kw.value for kw in node.keywords if kw.arg == "stage"]
            if name in ("StageFailure", "stage_errors") and node.args:
                given.append(node.args[0])
            bare += ["%s:%d" % (rel, node.lineno) for v in given if isinstance(v, ast.Constant)]
    bare = [where for where in bare if not where.startswith("runner_in_container/")]  # the runner's own
    assert bare == []


def test_stored_values_never_change():
    assert {s.value for s in JobState} == STORED_JOB_STATES
    assert {s.value for s in RunState} == STORED_RUN_STATES


def test_every_failing_stage_has_its_state_and_a_shown_only_one_has_none():
    failing = set(Stage) - {Stage.IMAGE, Stage.QUEUED, Stage.RUNNING}
    for stage in failing:
        assert JobState.failed(stage) == "FAILED_" + stage.value.upper()
    for stage in set(Stage) - failing:
        with pytest.raises(ValueError):
            JobState.failed(stage)
    assert (Stage.runner_ended(True), Stage.runner_ended(False)) == (Stage.RUN, Stage.START)


def test_words_print_and_store_as_their_values(tmp_path):
    assert ("%s" % JobState.FAILED_BUILD, f"{Stage.COLLECT}", str(RunState.FINISHED)) == (
        "FAILED_BUILD", "collect", "finished",
    )  # fmt: skip
    store = Store(str(tmp_path / "store.sqlite"))
    run_id = new_run_id()
    store.create_run(run_id, "c.yaml", {})
    for state in JobState:
        store.add_job(run_id, state.value.lower(), "h", "cpu", {})
        store.finish_job(run_id, state.value.lower(), state, None, None, {})
    store.finish_run(run_id, RunState.FINISHED)
    store.close()
    raw = sqlite3.connect(str(tmp_path / "store.sqlite"))
    stored = dict(raw.execute("SELECT job_id, state FROM jobs"))
    assert stored == {s.value.lower(): s.value for s in JobState}  # plain text, as earlier versions wrote
    assert raw.execute("SELECT state FROM runs").fetchone() == ("finished",)
    raw.close()


def test_a_store_written_with_plain_strings_reads_into_the_vocabulary(tmp_path):
    """An older store holds the words as text: they read back as the same states."""
    store = Store(str(tmp_path / "store.sqlite"))
    run_id = new_run_id()
    store.create_run(run_id, "c.yaml", {})
    for state in sorted(STORED_JOB_STATES):
        store.add_job(run_id, state.lower(), "h", "cpu", {})
    store.close()
    raw = sqlite3.connect(str(tmp_path / "store.sqlite"))
    raw.executemany("UPDATE jobs SET state = ? WHERE job_id = ?", [(s, s.lower()) for s in STORED_JOB_STATES])
    raw.execute("UPDATE runs SET state = 'interrupted'")
    raw.commit()
    raw.close()
    again = Store(str(tmp_path / "store.sqlite"), readonly=True)
    assert {JobState(job["state"]) for job in again.jobs(run_id)} == set(JobState)
    assert RunState(again.run(run_id)["state"]) is RunState.INTERRUPTED
    assert again.runs()[0]["ok"] == 1
