"""runner_in_container.discovery: one convention for vendors, toolkits, cases and launchers."""

import importlib
import itertools
import sys
from typing import Dict

import pytest

import vendors
from orchestrator import launchers
from runner_in_container import cases, contract, toolkits
from runner_in_container.discovery import PluginError, discover

_SERIAL = itertools.count()

BASE = '''
class Thing:
    name = ""


class Helper(Thing):
    """A base for plugins, with no name: its module is a helper."""
'''


def plugin(name: str, attribute: str = "THING", value: str = "{cls}()") -> str:
    cls = name.title().replace("_", "")
    return "from .base import Thing\n\n\nclass %s(Thing):\n    name = %r\n\n\n%s = %s\n" % (
        cls, name, attribute, value.format(cls=cls),
    )  # fmt: skip


@pytest.fixture
def package(tmp_path, monkeypatch):
    """make(modules) -> an importable package of ``base.py`` and ``modules`` (file name -> text)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []

    def make(modules: Dict[str, str]):
        name = "rn50bench_plugins_%d" % next(_SERIAL)
        root = tmp_path / name
        root.mkdir()
        (root / "__init__.py").write_text("")
        (root / "base.py").write_text(BASE)
        for file, text in modules.items():
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            (root / file).write_text(text)
        made.append(name)
        package = importlib.import_module(name)
        return package, importlib.import_module(name + ".base").Thing

    yield make
    for name in made:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def test_plugins_are_found_by_module_name_and_helpers_skipped(package):
    pkg, thing = package({
        "alpha.py": plugin("alpha"),
        "beta.py": plugin("beta"),
        "helpers.py": "from .base import Helper\n\nX = 1\n",
        "_private.py": "raise RuntimeError('never imported')\n",
        "sub/__init__.py": "raise RuntimeError('never imported')\n",
    })  # fmt: skip
    found = discover(pkg, "THING", thing)
    assert sorted(found) == ["alpha", "beta"]
    assert all(isinstance(p, thing) and p.name == n for n, p in found.items())


def test_class_plugins(package):
    pkg, thing = package({"alpha.py": plugin("alpha", value="{cls}")})
    found = discover(pkg, "THING", thing, classes=True)
    assert list(found) == ["alpha"] and issubclass(found["alpha"], thing)
    with pytest.raises(PluginError, match=r"alpha\.py: THING must be an instance of .*\.base\.Thing"):
        discover(pkg, "THING", thing)


@pytest.mark.parametrize(
    "text, message",
    [
        ("raise RuntimeError('boom')\n", r"/bad\.py: cannot be imported: RuntimeError: boom"),
        ("import not_a_module_anywhere\n", r"/bad\.py: cannot be imported: ModuleNotFoundError"),
        ("THING = object()\n", r"/bad\.py: THING must be an instance of .*\.base\.Thing"),
        (plugin("alpha"), r"/bad\.py: THING\.name is 'alpha'; it must equal the module name"),
        (plugin("bad", attribute="THINGS"), r"/bad\.py: defines Bad \('bad'\) but exposes no THING"),
    ],
)
def test_a_bad_plugin_module_is_one_error_naming_it(package, text, message):
    pkg, thing = package({"alpha.py": plugin("alpha"), "bad.py": text})
    with pytest.raises(PluginError, match=message) as caught:
        discover(pkg, "THING", thing)
    assert str(caught.value).startswith(pkg.__name__ + "/bad.py: ")


def test_two_plugins_cannot_share_a_name(package):
    """A plugin is named by its module, so a second one of the same name is a mismatch, named."""
    pkg, thing = package({"alpha.py": plugin("alpha"), "alpha_again.py": plugin("alpha")})
    with pytest.raises(PluginError, match=r"alpha_again\.py: THING\.name is 'alpha'"):
        discover(pkg, "THING", thing)


@pytest.mark.parametrize(
    "found, expected",
    [
        (lambda: vendors.discover(), ("cpu", "iluvatar", "kunlunxin", "nvidia", "zixiao")),
        (lambda: toolkits.names(), contract.TOOLKITS),
        (lambda: cases.discover(), contract.CASES),
        (lambda: launchers.discover(), ("slurm", "ssh")),
    ],
    ids=["vendors", "toolkits", "cases", "launchers"],
)
def test_the_four_call_sites_find_what_they_found(found, expected):
    assert tuple(sorted(found())) == tuple(expected)
