"""Results store: one SQLite file holding runs, jobs, results, environments and monitor samples (the device's
and, since the host monitor, the host's).

A writer opens it only in a folder of its user's alone (the workdir's rules, ``workdir.private_local``):
whoever can write the store decides what a resume runs. A new store appears whole: its tables are made in a
private file beside it (0600), which then takes the store's name at once, so two runs making one store at
the same time both find it complete.
"""

import contextlib
import json
import math
import os
import secrets
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from orchestrator.host import workdir as workdirs
from orchestrator.outcome import JobState, RunState
from orchestrator.safeio import bounded, ids

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    finished_at REAL,
    state TEXT NOT NULL,
    cluster_path TEXT NOT NULL,
    cluster_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    job_id TEXT NOT NULL,
    host TEXT NOT NULL,
    vendor TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    log_path TEXT,
    timings_json TEXT,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (run_id, job_id)
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    result_json TEXT NOT NULL,
    derived_json TEXT NOT NULL,
    PRIMARY KEY (run_id, job_id)
);
CREATE TABLE IF NOT EXISTS environments (
    run_id TEXT NOT NULL,
    host TEXT NOT NULL,
    env_json TEXT NOT NULL,
    PRIMARY KEY (run_id, host)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    samples_json TEXT NOT NULL,
    PRIMARY KEY (run_id, job_id)
);
"""
#: tables added since the first stores: a writer adds them to an older store
ADDED_SCHEMA = """
CREATE TABLE IF NOT EXISTS fetched (
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (run_id, job_id)
);
CREATE TABLE IF NOT EXISTS host_samples (
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    samples_json TEXT NOT NULL,
    PRIMARY KEY (run_id, job_id)
);
CREATE TABLE IF NOT EXISTS conditions (
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    conditions_json TEXT NOT NULL,
    PRIMARY KEY (run_id, job_id)
);
CREATE TABLE IF NOT EXISTS versions (
    run_id TEXT PRIMARY KEY,
    version TEXT NOT NULL
);
"""

#: the way out of a store folder that is not the run user's alone, for its fix
STORE_ELSEWHERE = "or name a store in a folder of your own (--store)"


class StoreError(RuntimeError):
    """The store cannot be opened, read or written, or refuses a write that would lose a finished result;
    the message is one line naming the store."""


def _columns(db: sqlite3.Connection) -> Dict[str, Set[str]]:
    """Table name -> column names of an open database."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: {r[1] for r in db.execute("PRAGMA table_info(%s)" % _quoted(name))} for name in names}


def _quoted(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


def _expected_columns() -> Dict[str, Set[str]]:
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.executescript(SCHEMA)
        return _columns(db)


#: what makes a SQLite file this project's store: these tables with (at least) these columns
EXPECTED = _expected_columns()


def _declared_types() -> Dict[str, str]:
    """Column name -> its declared type (TEXT, REAL), over every table (a name has one type everywhere)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.executescript(SCHEMA)
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {r[1]: r[2] for t in tables for r in db.execute("PRAGMA table_info(%s)" % _quoted(t))}


#: SQLite keeps whatever type a writer gives a cell: values are read back as their column declares them
DECLARED_TYPES = _declared_types()


def _as_declared(column: str, value: Any) -> Any:
    """``value`` of ``column`` as its declared type: TEXT as text (bytes decoded, escaped where not UTF-8),
    REAL as a finite number or None; other columns (counts made by a query) as read."""
    kind = DECLARED_TYPES.get(column)
    if value is None or kind is None:
        return value
    if isinstance(value, bytes):
        value = _text(value)
    if kind == "TEXT":
        return str(value)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


#: the largest JSON cell read back (a result is about 10 KiB)
MAX_CELL_BYTES = 16 << 20


def read_cell(text: Optional[str], column: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """The JSON object stored in a cell of ``column`` (read within ``bounded``'s limits), and None; or None
    and one line saying why it is unreadable (a store edited by hand, or by another program)."""
    try:
        if text is None or len(text) > MAX_CELL_BYTES:
            raise bounded.Refused("missing" if text is None else "larger than %d bytes" % MAX_CELL_BYTES)
        value = bounded.loads(text)
    except bounded.Refused as exc:
        return None, "%s: %s" % (column, exc)
    if not isinstance(value, dict):
        return None, "%s: not a JSON object" % column
    return value, None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _connect(path: str, readonly: bool) -> sqlite3.Connection:
    """Open ``path`` (see Store); StoreError with one line when it is no store of ours or cannot be opened."""
    target = Path(path)
    if target.is_dir():
        raise StoreError(
            "store %s is a directory; name the store's file (e.g. %s)" % (path, target / "rn50bench.sqlite")
        )
    if readonly and not (target.exists() and target.stat().st_size > 0):
        what = "is an empty file (0 bytes)" if target.exists() else "does not exist"
        raise StoreError(
            "store %s %s: no results in it (run something first, or pass --store)" % (path, what)
        )
    try:
        if readonly:
            db = _connect_readonly(target)
        else:
            _create(target)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        _check_schema(path, _columns(db))
        if not readonly:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(ADDED_SCHEMA)
    except workdirs.WorkdirRefused as exc:
        raise StoreError(str(exc)) from None
    except OSError as exc:
        raise StoreError("store %s cannot be opened: %s" % (path, exc.strerror or exc)) from None
    except sqlite3.Error as exc:
        what = "read" if readonly else "opened for writing"
        raise StoreError("store %s cannot be %s: %s" % (path, what, _one_line(exc))) from None
    db.row_factory = sqlite3.Row
    return db


def _create(target: Path) -> None:
    """Make the store's folder private (workdir's rules: the folder, the store and what is beside it) and,
    when no store is there yet (or an empty file), a new one, whole: made in a 0600 file beside it that then
    takes its name (a hard link: never over a store that another run made meanwhile)."""
    workdirs.private_local(str(target.parent), "store folder", STORE_ELSEWHERE, 1)
    if target.exists() and target.stat().st_size > 0:
        return
    staging = target.with_name(".%s.new-%s" % (target.name, secrets.token_hex(4)))
    os.close(os.open(str(staging), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    try:
        with contextlib.closing(sqlite3.connect(str(staging), isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")  # kept in the file; its -wal and -shm files get its 0600
            db.executescript(SCHEMA + ADDED_SCHEMA)
        try:
            os.link(str(staging), str(target))
        except FileExistsError:
            if target.stat().st_size == 0:  # an empty file there: it becomes the new store
                os.replace(str(staging), str(target))
    finally:
        staging.unlink(missing_ok=True)


def _connect_readonly(target: Path) -> sqlite3.Connection:
    """Read-only, changing nothing (no journal mode, no tables); on read-only media, where SQLite cannot
    make a WAL store's shared-memory file, as an immutable file."""
    uri = "file:%s?mode=ro" % urllib.parse.quote(str(target.resolve()))
    db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    try:
        _columns(db)
        return db
    except sqlite3.OperationalError:
        db.close()
        if os.access(str(target.parent), os.W_OK):
            raise
    return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False, isolation_level=None)


def _check_schema(path: str, found: Dict[str, Set[str]]) -> None:
    """StoreError unless ``found`` has every table and column of this project's store."""
    for table, columns in EXPECTED.items():
        missing = sorted(columns - found.get(table, set()))
        if missing:
            what = "no table %s" % table if table not in found else "table %s lacks %s" % (table, missing[0])
            raise StoreError(
                "%s is not an rn50bench results store (%s); name another file with --store" % (path, what)
            )


def new_run_id() -> str:
    """Sortable, unique run id: UTC time plus a random suffix."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class Store:
    """Thread-safe access to the SQLite file; every write is its own transaction."""

    def __init__(self, path: str, readonly: bool = False) -> None:
        """Open the store at ``path``: for writing (made if missing), or ``readonly`` for the commands that
        only read (ls, report), which change nothing in the file. Either way an existing file must be this
        project's store; StoreError (one line) otherwise."""
        self.path = path
        self._lock = threading.Lock()
        self._db = _connect(path, readonly)
        self._db.text_factory = _text  # a cell that is not UTF-8 is read, escaped, not refused

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; an SQLite error (disk full, read-only file...) becomes StoreError."""
        with self._lock, self._errors("written"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT (disk full) has rolled back already
                    self._db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError("store %s cannot be %s: %s" % (self.path, what, _one_line(exc))) from None

    def _write(self, sql: str, params: tuple) -> int:
        """Run one statement in its own transaction; the number of rows it changed."""
        with self._transaction() as db:
            return db.execute(sql, params).rowcount

    def _rows(self, sql: str, params: tuple = ()) -> List[Dict[str, Any]]:
        """The rows of a query, each value as its column declares it (``_as_declared``)."""
        with self._lock, self._errors("read"):
            rows = list(self._db.execute(sql, params))
        return [{key: _as_declared(key, row[key]) for key in row.keys()} for row in rows]

    def _checked_ids(self, run_id: str, job_id: str = "j") -> None:
        """StoreError unless both are valid ids (ids.py): ids name folders."""
        try:
            ids.checked("run", run_id)
            ids.checked("job", job_id)
        except ids.BadId as exc:
            raise StoreError("store %s: %s" % (self.path, exc)) from None

    # -- runs -------------------------------------------------------------------
    def create_run(
        self, run_id: str, cluster_path: str, cluster: Dict[str, Any], version: Optional[str] = None
    ) -> None:
        """A new run, with the ``version`` of the orchestrator that makes it (orchestrator/version.py)."""
        self._checked_ids(run_id)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO runs (run_id, created_at, state, cluster_path, cluster_json)"
                " VALUES (?, ?, ?, ?, ?)",
                (run_id, time.time(), RunState.RUNNING, cluster_path, json.dumps(cluster, sort_keys=True)),
            )
            if version is not None:
                db.execute("INSERT INTO versions (run_id, version) VALUES (?, ?)", (run_id, version))

    def finish_run(self, run_id: str, state: RunState) -> None:
        self._write(
            "UPDATE runs SET state = ?, finished_at = ? WHERE run_id = ?", (state, time.time(), run_id)
        )

    def reopen_run(self, run_id: str, cluster_path: str, cluster: Dict[str, Any]) -> None:
        """Mark a stored run as running again (resume), with the cluster file it resumes with."""
        self._write(
            "UPDATE runs SET state = ?, finished_at = NULL, cluster_path = ?, cluster_json = ?"
            " WHERE run_id = ?",
            (RunState.RUNNING, cluster_path, json.dumps(cluster, sort_keys=True), run_id),
        )

    def run(self, run_id: str) -> Optional[Dict[str, Any]]:
        """The run's row, with the version that made it (None where the store did not keep it)."""
        rows = self._rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return dict(rows[0], version=self._versions().get(run_id)) if rows else None

    def runs(self) -> List[Dict[str, Any]]:
        """Every run, oldest first: its row, how many jobs it has and how many ended OK, its hosts and
        vendors (sorted, comma-separated), and the orchestrator version that made it (None where the store
        did not keep it)."""
        rows = self._rows(
            "SELECT r.run_id, r.created_at, r.finished_at, r.state, r.cluster_path,"
            " COUNT(j.job_id) AS jobs, SUM(j.state = ?) AS ok,"
            " GROUP_CONCAT(DISTINCT j.host) AS hosts, GROUP_CONCAT(DISTINCT j.vendor) AS vendors"
            " FROM runs r LEFT JOIN jobs j ON j.run_id = r.run_id GROUP BY r.run_id ORDER BY r.run_id",
            (JobState.OK,),
        )
        versions = self._versions()
        for row in rows:
            for key in ("hosts", "vendors"):
                row[key] = ",".join(sorted(set(str(row[key] or "").split(",")) - {""}))
            row["version"] = versions.get(row["run_id"])
        return rows

    def _versions(self) -> Dict[str, str]:
        """run id -> the version that made it ({} in a store older than the table, read read-only)."""
        with self._lock, self._errors("read"):
            if "versions" not in _columns(self._db):
                return {}
        return {r["run_id"]: r["version"] for r in self._rows("SELECT run_id, version FROM versions")}

    def latest_run(self) -> Optional[str]:
        """The id of the run started last; None in a store without runs."""
        rows = self._rows("SELECT run_id FROM runs ORDER BY created_at DESC, run_id DESC LIMIT 1")
        return rows[0]["run_id"] if rows else None

    # -- jobs -------------------------------------------------------------------
    def add_job(self, run_id: str, job_id: str, host: str, vendor: str, spec: Dict[str, Any]) -> None:
        self._checked_ids(run_id, job_id)
        self._write(
            "INSERT OR IGNORE INTO jobs (run_id, job_id, host, vendor, spec_json, state)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, job_id, host, vendor, json.dumps(spec, sort_keys=True), JobState.PENDING),
        )

    def start_job(self, run_id: str, job_id: str) -> str:
        """Mark a job running and drop what an earlier, failed attempt stored; never a job that is OK.

        Returns the state it had (RUNNING: an earlier orchestrator ended, or lost its store, mid-job)."""
        where = (run_id, job_id)
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE run_id = ? AND job_id = ?", where).fetchone()
            if row is None or row["state"] == JobState.OK:
                what = "is unknown" if row is None else "finished OK and is never run again"
                raise StoreError("job %s of run %s %s" % (job_id, run_id, what))
            for table in ("results", "samples", "host_samples", "conditions"):
                db.execute("DELETE FROM %s WHERE run_id = ? AND job_id = ?" % table, where)
            db.execute(
                "UPDATE jobs SET state = ?, reason = NULL, started_at = ?, finished_at = NULL"
                " WHERE run_id = ? AND job_id = ?",
                (JobState.RUNNING, time.time()) + where,
            )
            return row["state"]

    def finish_job(
        self,
        run_id: str,
        job_id: str,
        state: JobState,
        reason: Optional[str],
        log_path: Optional[str],
        timings: Dict[str, float],
    ) -> None:
        """Store a job's final state; a job that finished OK keeps its state."""
        self._write(
            "UPDATE jobs SET state = ?, reason = ?, log_path = ?, timings_json = ?, finished_at = ?"
            " WHERE run_id = ? AND job_id = ? AND state != ?",
            (state, reason, log_path, json.dumps(timings, sort_keys=True), time.time(), run_id, job_id)
            + (JobState.OK,),
        )

    def cancel_unfinished(self, run_id: str, reason: str) -> int:
        """Mark the run's pending and running jobs CANCELLED; how many there were."""
        return self._write(
            "UPDATE jobs SET state = ?, reason = ?, finished_at = ? WHERE run_id = ? AND state IN (?, ?)",
            (JobState.CANCELLED, reason, time.time(), run_id, JobState.PENDING, JobState.RUNNING),
        )

    def jobs(self, run_id: str) -> List[Dict[str, Any]]:
        """The run's jobs in order; a job whose spec or timings cell is unreadable has ``spec`` None (or
        ``timings`` {}) and ``unreadable``, one line saying why (None otherwise)."""
        out = []
        for row in self._rows("SELECT * FROM jobs WHERE run_id = ? ORDER BY rowid", (run_id,)):
            item = dict(row)
            item["spec"], unreadable = read_cell(item.pop("spec_json"), "spec_json")
            timings, bad_timings = read_cell(item.pop("timings_json") or "{}", "timings_json")
            item["timings"] = timings or {}
            item["unreadable"] = unreadable or bad_timings
            out.append(item)
        return out

    # -- results, environments, samples -----------------------------------------
    def record_fetch(self, run_id: str, job_id: str, sha256: str) -> None:
        """Note the sha256 of the result file this orchestrator fetched for a job, before it is read: a
        resume takes a fetched file that was never stored only when it still has this digest."""
        self._write(
            "INSERT OR REPLACE INTO fetched (run_id, job_id, sha256) VALUES (?, ?, ?)",
            (run_id, job_id, sha256),
        )

    def fetched(self, run_id: str, job_id: str) -> Optional[str]:
        """The sha256 recorded by ``record_fetch`` for the job's last fetched result, or None."""
        where = (run_id, job_id)
        rows = self._rows("SELECT sha256 FROM fetched WHERE run_id = ? AND job_id = ?", where)
        return str(rows[0]["sha256"]) if rows else None

    def put_result(self, run_id: str, job_id: str, result: Dict[str, Any], derived: Dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO results (run_id, job_id, result_json, derived_json) VALUES (?, ?, ?, ?)",
            (run_id, job_id, json.dumps(result, sort_keys=True), json.dumps(derived, sort_keys=True)),
        )

    def results(self, run_id: str) -> Dict[str, Dict[str, Any]]:
        """job id -> ``result`` and ``derived`` as stored, and ``unreadable``: None, or one line saying why a
        cell is unreadable (its value is None then); ``report.load`` reads them typed."""
        rows = self._rows("SELECT job_id, result_json, derived_json FROM results WHERE run_id = ?", (run_id,))
        out = {}
        for r in rows:
            result, bad_result = read_cell(r["result_json"], "result_json")
            derived, bad_derived = read_cell(r["derived_json"], "derived_json")
            out[r["job_id"]] = {"result": result, "derived": derived, "unreadable": bad_result or bad_derived}
        return out

    def put_environment(self, run_id: str, host: str, env: Dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO environments (run_id, host, env_json) VALUES (?, ?, ?)",
            (run_id, host, json.dumps(env, sort_keys=True)),
        )

    def environments(self, run_id: str) -> Dict[str, Dict[str, Any]]:
        """host -> its captured environment ({}: the cell is unreadable, nothing of it is known)."""
        rows = self._rows("SELECT host, env_json FROM environments WHERE run_id = ? ORDER BY host", (run_id,))
        return {r["host"]: read_cell(r["env_json"], "env_json")[0] or {} for r in rows}

    def put_samples(self, run_id: str, job_id: str, samples: Dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO samples (run_id, job_id, samples_json) VALUES (?, ?, ?)",
            (run_id, job_id, json.dumps(samples, sort_keys=True)),
        )

    def samples(self, run_id: str) -> Dict[str, Dict[str, Any]]:
        """job id -> its device monitor summary (left out where the cell is unreadable)."""
        return self._summaries("samples", run_id)

    def _summaries(self, table: str, run_id: str, column: str = "samples_json") -> Dict[str, Dict[str, Any]]:
        """job id -> its JSON cell in ``table`` (left out where unreadable; {} where an older store, read
        read-only, lacks the table)."""
        with self._lock, self._errors("read"):
            if table not in _columns(self._db):
                return {}
        rows = self._rows("SELECT job_id, %s FROM %s WHERE run_id = ?" % (column, table), (run_id,))
        cells = {r["job_id"]: read_cell(r[column], column)[0] for r in rows}
        return {job_id: cell for job_id, cell in cells.items() if cell is not None}

    def put_host_samples(self, run_id: str, job_id: str, samples: Dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO host_samples (run_id, job_id, samples_json) VALUES (?, ?, ?)",
            (run_id, job_id, json.dumps(samples, sort_keys=True)),
        )

    def host_samples(self, run_id: str) -> Dict[str, Dict[str, Any]]:
        """job id -> its host monitor summary (none in a store older than the host monitor, read read-only;
        left out where the cell is unreadable)."""
        return self._summaries("host_samples", run_id)

    def put_conditions(self, run_id: str, job_id: str, conditions: Dict[str, Any]) -> None:
        """Store the conditions a job ran under (``host/conditions.py``)."""
        self._write(
            "INSERT OR REPLACE INTO conditions (run_id, job_id, conditions_json) VALUES (?, ?, ?)",
            (run_id, job_id, json.dumps(conditions, sort_keys=True)),
        )

    def conditions(self, run_id: str) -> Dict[str, Dict[str, Any]]:
        """job id -> the conditions it ran under (none in a store older than the table, read read-only; left
        out where the cell is unreadable)."""
        return self._summaries("conditions", run_id, "conditions_json")
