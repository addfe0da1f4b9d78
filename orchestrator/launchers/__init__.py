"""Launchers: how the jobs of one host entry get run, one module each, found by scanning this package.

A launcher module ``<name>.py`` exposes ``LAUNCHER``, a subclass of ``base.Launcher`` whose
``name`` is ``<name>``, the cluster file's ``launcher:`` value (the convention of
``runner_in_container/discovery.py``); ``scheduler.run_all`` makes one per host entry and calls
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

import sys
from typing import Dict, Type

from orchestrator.launchers.base import Launcher
from runner_in_container.discovery import discover as discover_plugins


def discover() -> Dict[str, Type[Launcher]]:
    """name -> launcher class for every module of this package exposing ``LAUNCHER``."""
    return discover_plugins(sys.modules[__name__], "LAUNCHER", Launcher, classes=True)


def get(name: str) -> Type[Launcher]:
    """The launcher called ``name``; ValueError listing the known ones otherwise."""
    known = discover()
    if name not in known:
        raise ValueError("unknown launcher %r (known: %s)" % (name, ", ".join(sorted(known))))
    return known[name]
