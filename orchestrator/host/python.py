"""A bare host's own Python, started so that it imports only what is installed, never what is in the folder
it starts in.

``python -m MODULE`` and ``python -c CODE`` put the current folder first on ``sys.path``, before PYTHONPATH
and the standard library -- ``-m`` even imports ``runpy`` from there --, and that folder is wherever the
orchestrator (a local host) or the SSH login started: a ``runner_in_container/``, ``runpy.py`` or ``torch/``
that another user left there would run as the run's user (root). ``-I`` keeps it out but drops PYTHONPATH
and the user's site-packages too (where a bare host's torch may be), and ``PYTHONSAFEPATH`` needs Python 3.11
(bare hosts may have 3.8). So every start here is ``python -c`` whose first statement drops each relative
entry of ``sys.path`` (``''``: the current folder) before anything is imported.
"""

from typing import List, Sequence

#: the first statement of every ``-c`` (``sys`` is built in: importing it reads no file)
_ABSOLUTE_PATH_ONLY = "import sys; sys.path[:] = [p for p in sys.path if p.startswith('/')]"
#: ``python -m MODULE ARGS`` in folder CWD: ``-c`` arguments CWD MODULE ARGS
_RUN_MODULE = (
    "import os, runpy; os.chdir(sys.argv.pop(1)); "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)


def code_argv(python: str, code: str, args: Sequence[str] = ()) -> List[str]:
    """``python -c CODE ARGS``, importing nothing from the current folder; CODE is one line of simple
    statements (the command stays one line in logs and process lists)."""
    return [python, "-c", _ABSOLUTE_PATH_ONLY + "; " + code] + list(args)


def module_argv(python: str, module: str, cwd: str, args: Sequence[str]) -> List[str]:
    """What ``python -m MODULE ARGS`` does, run in the folder ``cwd`` (absolute), importing nothing from the
    folder it starts in; MODULE comes from PYTHONPATH or the installed packages."""
    return code_argv(python, _RUN_MODULE, [cwd, module] + list(args))
