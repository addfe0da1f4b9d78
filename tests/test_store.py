"""The SQLite store keeps runs, jobs, results, environments and samples, and reads them back."""

import threading

from orchestrator.outcome import JobState
from orchestrator.store import Store, new_run_id


def test_round_trip(tmp_path):
    store = Store(str(tmp_path / "s" / "bench.sqlite"))
    run_id = new_run_id()
    store.create_run(run_id, "/x/hosts.yaml", {"hosts": []})
    store.add_job(run_id, "j1", "h1", "cpu", {"device": 0, "toolkit": "pytorch"})
    store.add_job(run_id, "j1", "h1", "cpu", {"device": 0, "toolkit": "pytorch"})  # idempotent
    assert [j["state"] for j in store.jobs(run_id)] == [JobState.PENDING]
    store.start_job(run_id, "j1")
    assert store.jobs(run_id)[0]["state"] == JobState.RUNNING
    store.finish_job(run_id, "j1", JobState.OK, None, "/log", {"job_s": 1.5})
    store.put_result(run_id, "j1", {"status": "ok"}, {"mfu": None})
    store.put_environment(run_id, "h1", {"kernel": "6.1"})
    store.put_samples(run_id, "j1", {"samples": []})
    store.finish_run(run_id, "finished")
    store.close()

    again = Store(str(tmp_path / "s" / "bench.sqlite"))
    job = again.jobs(run_id)[0]
    assert (
        job["state"] == JobState.OK
        and job["timings"] == {"job_s": 1.5}
        and job["spec"]["toolkit"] == "pytorch"
    )
    assert again.results(run_id)["j1"]["derived"] == {"mfu": None}
    assert again.environments(run_id) == {"h1": {"kernel": "6.1"}}
    assert again.samples(run_id)["j1"] == {"samples": []}
    runs = again.runs()
    assert runs[0]["run_id"] == run_id and runs[0]["jobs"] == 1 and runs[0]["ok"] == 1
    assert again.run(run_id)["state"] == "finished"


def test_concurrent_writers(tmp_path):
    store = Store(str(tmp_path / "bench.sqlite"))
    run_id = new_run_id()
    store.create_run(run_id, "c", {})

    def work(n: int) -> None:
        for i in range(20):
            store.add_job(run_id, "j%d-%d" % (n, i), "h", "cpu", {"device": n})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.jobs(run_id)) == 80


def test_run_ids_are_unique_and_sortable():
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i.split("-")) == 3 for i in ids)
