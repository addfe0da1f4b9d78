"""Launchers: how the jobs of one host entry get run.

A launcher is a function ``run_host(ctx, host_name, jobs) -> {job_id: final state}``
that ``scheduler.run_all`` calls once per host entry, in parallel. Its worker subclasses
``hostrun.HostWorker`` and overrides only what differs -- ``_check_docker``,
``_capture_environment``, ``_build`` and ``_run_runner`` (plus, where jobs do not queue per
device, ``transport_for`` and ``_say``) -- so the job's command
(``job_command``), result fetching, validation, derived figures and the store are shared;
``queues.run_queues`` prepares the host and drains the launcher's queues of jobs.

- ``ssh`` (``scheduler.run_host``): the orchestrator starts each job itself on a local or
  SSH host, one job at a time per device.
- ``slurm`` (``launchers.slurm.run_host``): it submits each job with ``sbatch`` and
  follows it through ``squeue``/``sacct`` and the job's output file.
"""
