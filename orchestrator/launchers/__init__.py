"""Launchers: how the jobs of one host entry get run, one module each, found by scanning this package.

A launcher module exposes ``LAUNCHER``, a subclass of ``base.Launcher`` whose ``name`` is the
cluster file's ``launcher:`` value; ``scheduler.run_all`` makes one per host entry and calls
its ``run(jobs)``, the host entries in parallel. The job's lifecycle (``job.lifecycle.HostWorker``:
its command, result fetching, validation, derived figures, the store) is shared; the
launcher says how the host is prepared and how a job's command runs (``job.launch.Launch``),
and owns its sections of the cluster file (``settings_class``, ``host_settings_class``, ``check``).
Modules without ``LAUNCHER`` (base, queues, slurmctl, slurm_settings) are helpers.

- ``ssh`` (``ssh.py``): the orchestrator starts each job itself on a local or SSH host, one
  job at a time per device.
- ``slurm`` (``slurm.py``, its settings ``slurm_settings.py``): it submits each job with ``sbatch``
  and follows it through ``squeue``/``sacct`` and the job's output file.
"""

import importlib
import pkgutil
from typing import Dict, Type

from orchestrator.launchers.base import Launcher


def discover() -> Dict[str, Type[Launcher]]:
    """name -> launcher class for every module of this package exposing ``LAUNCHER``."""
    found: Dict[str, Type[Launcher]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        launcher = getattr(importlib.import_module("%s.%s" % (__name__, info.name)), "LAUNCHER", None)
        if launcher is not None:
            found[launcher.name] = launcher
    return found


def get(name: str) -> Type[Launcher]:
    """The launcher called ``name``; ValueError listing the known ones otherwise."""
    known = discover()
    if name not in known:
        raise ValueError("unknown launcher %r (known: %s)" % (name, ", ".join(sorted(known))))
    return known[name]
