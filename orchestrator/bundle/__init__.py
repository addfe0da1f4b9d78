"""Bundles: a whole benchmark environment carried into an air-gapped lab, verified at every step.

``python -m orchestrator bundle export|verify|import`` (command.py). A bundle is one folder::

    manifest.json                         every file below with its sha256 and size, the plan, the
                                          project version, each image's ID and build environment,
                                          the expected checksums of data and weights
    images/<vendor>-<content hash>.tar.gz docker save of one vendor image, gzip (docker load reads it)
    runner/runner-<content hash>.tar      runner_in_container/ as the images hold it
    sdk/<vendor>/<file>                   the SDK installers the images were built from
    wheels/<host>/<file>.whl              what a bare host's Python needs (pip install --no-index)

The manifest's own sha256 names the bundle: import tags every image it loads with it (origin.py),
and a run's environment table shows it.
"""
