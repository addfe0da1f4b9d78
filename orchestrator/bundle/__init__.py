"""Bundles: a whole benchmark environment carried into an air-gapped lab, verified at every step.

``python -m orchestrator bundle export|verify|import`` (command.py). A bundle is one folder::

    manifest.json                         every file below with its sha256 and size, the plan, the
                                          project version, each image's ID and build environment,
                                          the expected checksums of data and weights
    images/<vendor>-<content hash>.tar.gz docker save of one image ID, gzip: names no image (archive.py)
    runner/runner-<content hash>.tar      runner_in_container/ as the images hold it
    sdk/<vendor>/<file>                   the SDK installers the images were built from
    wheels/<host>/<file>.whl              what a bare host's Python needs (pip install --no-index)

The manifest's own sha256 names the bundle: ``verify`` and ``import`` check it against ``--expect``
(and warn without it), import tags every image it loads and checks with it (host/origin.py), and a run's
environment table shows it. manifest.py validates every path the manifest names, tree.py reads the folder
without leaving it, archive.py finds the image an archive holds in the read that hashes it.
"""
