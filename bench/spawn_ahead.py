"""The decoding processes' start, spawned before the runner's imports (ahead, runner_in_container/ahead.py)
or after them (late, as before): one table.

    python -m bench.spawn_ahead --data /tmp/set/val --device cuda:0 --processes 8 --trials 3   (GPU host)
    python -m bench.spawn_ahead --data /tmp/s/val --device cpu --processes 2 --trials 3         (anywhere)
Each trial is a fresh interpreter that does what the runner does first: spawn the processes (ahead) or not,
import torch, torchvision and the runner's command line, open the device, take its memory baseline, spawn
(late), let the processes use the device, open the set and start the loader. Seconds after the
interpreter started: when the runner's imports ended, and when the slowest process had imported, warmed its
device (given one), got its set-up and was ready (data.decode_start_s's phases).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
MODES = ("late", "ahead")
COLUMNS = ("main_imported", "spawned", "imported", "device", "set_up", "ready")


def trial(mode: str, data: str, device: str, processes: int) -> Dict[str, float]:
    """One runner-like start in this interpreter; its phases, seconds after ``began``."""
    began = time.time()
    from runner_in_container.data.spawned import Spawned

    spawned = Spawned(processes, device=device) if mode == "ahead" else None
    import torch

    import runner_in_container.cli  # noqa: F401 - the runner's own imports
    from runner_in_container import device as devices
    from runner_in_container.data import open_dataset
    from runner_in_container.data.decode_procs import ProcessBatchLoader
    from runner_in_container.data.preprocess import Preprocessing

    main_imported = time.time()
    devices.open_device(torch.device(device)).take_baseline()
    spawned = spawned or Spawned(processes, device=device)
    spawned.use_device()
    dataset = open_dataset(data, layout="imagefolder")
    loader = ProcessBatchLoader(
        dataset, 256, Preprocessing(), torch.device(device), processes, workers=1, spawned=spawned
    )
    try:
        loader.wait_started()
        phases = dict(loader.start_phases or {}, main_imported=main_imported)
    finally:
        loader.close()
    return {name: round(when - began, 2) for name, when in phases.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an imagefolder set (its val folder)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--trial", choices=MODES, help=argparse.SUPPRESS)  # one trial, in a fresh interpreter
    args = parser.parse_args()
    if args.trial:
        print(json.dumps(trial(args.trial, args.data, args.device, args.processes)))
        return 0
    rows: List[str] = ["| trial | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for number in range(1, args.trials + 1):
        for mode in MODES:
            argv = [sys.executable, "-m", "bench.spawn_ahead", "--trial", mode]
            argv += ["--data", args.data, "--device", args.device, "--processes", str(args.processes)]
            done = subprocess.run(argv, cwd=str(REPO), capture_output=True, text=True, check=True)
            phases = json.loads(done.stdout.splitlines()[-1])
            cells = ["%.2f" % phases[name] if name in phases else "-" for name in COLUMNS]
            rows.append("| %s %d | %s |" % (mode, number, " | ".join(cells)))
            print(rows[-1], flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
