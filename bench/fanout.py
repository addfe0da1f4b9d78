"""What one more SSH host costs the orchestrator: fan-out over k = 1, 2, 4, 8, 16 hosts.

    sudo /path/to/venv/bin/python -m bench.fanout      (as root: network namespaces; a few minutes)

Each host is a real sshd in its own network namespace (bench/sshlab.py), reached over SSH with its
host key checked, with ``runtime: bare`` and one small job: ResNet50, pytorch fp32, bs 1, one pass over 2
generated images, random weights. The hosts' interpreter is this one run on one thread at the lowest CPU
priority (``nice -n 19``): on one machine the k "hosts" share its CPUs with the orchestrator, which on real
hosts would have its own, so the jobs yield to it instead of slowing it down k times. For each k
the whole ``python -m orchestrator run`` is timed from outside; the longest job's own wall time
(``timings.job_s`` in the store: from the job's start on its host to its result stored) is subtracted. What
is left is the orchestrator's own cost: starting up, planning, connecting, capturing each host's
environment, installing the runner, storing, reporting. Its growth per extra host,
(overhead(k) - overhead(1)) / (k - 1), is the figure to keep under 1 s.

The jobs share this machine's CPUs, so the longest job grows with k; the difference does not include it.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from bench.sshlab import Lab, SshHost
from orchestrator.outcome import JobState
from orchestrator.store import Store
from runner_in_container.data.generate import generate

REPO = Path(__file__).resolve().parent.parent

CASE = {"toolkit": "pytorch", "precision": "fp32", "batch_size": 1, "repeat": 1, "warmup": 0, "runs": 1}
#: how long a remote command may take to start: generous, for a machine shared with other work
CONNECT_S = 300
#: the hosts' interpreter: this one, on one thread, at the lowest priority
PYTHON = '#!/bin/sh\nexec env OMP_NUM_THREADS=1 nice -n 19 %s "$@"\n' % sys.executable


def cluster_file(folder: Path, hosts: List[SshHost], data: str, python: Path) -> Path:
    """A cluster file with one bare host entry per SSH host and one job on each."""
    entries = [
        {
            "name": host.name,
            "address": host.address,
            "port": host.port,
            "user": host.user,
            "key_file": host.key_file,
            "known_hosts": host.known_hosts,
            "vendor": "cpu",
            "runtime": "bare",
            "python": str(python),
            "workdir": str(folder / "work" / host.name),
            "workers": 1,
            "data": {"path": data},
            "weights": "random",
            "timeouts": {"connect": CONNECT_S},
        }
        for host in hosts
    ]
    doc = {
        "store": str(folder / "store.sqlite"),
        "results_dir": str(folder / "results"),
        "hosts": entries,
        "cases": [CASE],
    }
    path = folder / "hosts.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def measure(folder: Path, hosts: List[SshHost], data: str, python: Path) -> Dict[str, float]:
    """Run the orchestrator over ``hosts``; its wall time and the longest job's."""
    folder.mkdir()
    path = cluster_file(folder, hosts, data, python)
    argv = [sys.executable, "-m", "orchestrator", "run", "--cluster", str(path)]
    started = time.monotonic()
    with (folder / "orchestrator.out").open("w") as out:
        code = subprocess.run(argv, cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - started
    if code != 0:
        sys.exit(
            "k=%d: the run failed:\n%s" % (len(hosts), (folder / "orchestrator.out").read_text()[-3000:])
        )
    store = Store(str(folder / "store.sqlite"))
    (run,) = store.runs()
    jobs = store.jobs(run["run_id"])
    if [j["state"] for j in jobs] != [JobState.OK] * len(hosts):
        sys.exit("k=%d: not every job is OK: %s" % (len(hosts), [(j["job_id"], j["state"]) for j in jobs]))
    return {"wall": wall, "longest": max(j["timings"]["job_s"] for j in jobs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="the k values")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rn50b-fanout.") as tmp:
        root = Path(tmp)
        data = generate(str(root / "set"), images=2, layout="imagefolder")
        python = root / "python"
        python.write_text(PYTHON)
        python.chmod(0o755)
        (root / "sshd").mkdir()
        lab = Lab(root / "sshd")
        try:
            hosts = [lab.host("h%02d" % i) for i in range(max(args.hosts))]
            print("| hosts k | run wall (s) | longest job (s) | difference (s) | per extra host (s) |")
            print("|---|---|---|---|---|", flush=True)
            base = None
            for k in args.hosts:
                row = measure(root / ("k%d" % k), hosts[:k], data, python)
                overhead = row["wall"] - row["longest"]
                base = base or (k, overhead)
                per_host = "%.2f" % ((overhead - base[1]) / (k - base[0])) if k != base[0] else "-"
                print(
                    "| %d | %.1f | %.1f | %.1f | %s |" % (k, row["wall"], row["longest"], overhead, per_host),
                    flush=True,
                )
        finally:
            lab.close()


if __name__ == "__main__":
    main()
