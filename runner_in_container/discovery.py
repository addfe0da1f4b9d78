"""Plugins found by scanning a package: one convention for vendors, toolkits, cases and launchers.

The convention: module ``<package>/<name>.py`` is the plugin called ``<name>`` when it
exposes the package's one module-level name (``VENDOR``, ``TOOLKIT``, ``CASE``,
``LAUNCHER``), bound to a plugin of the package's kind (an instance of the kind's base
class, or for class plugins a subclass of it) whose ``name`` is ``<name>``. A module that
exposes no such name is a helper, unless it defines a named plugin class of its own and
forgot to expose it. Anything else is a PluginError naming the module. Adding a plugin is
adding its module: there is no list to edit.

Standard library only, Python 3.8: the runner uses it inside vendor images.
"""

import importlib
import pkgutil
from types import ModuleType
from typing import Any, Dict


class PluginError(ValueError):
    """A plugin module cannot be used; the message names its file and what is wrong."""


def discover(package: ModuleType, attribute: str, kind: type, classes: bool = False) -> Dict[str, Any]:
    """name -> plugin for every module of ``package`` exposing ``attribute`` (see the module docstring).

    ``kind`` is the plugins' base class; ``classes`` says the plugins are subclasses of it
    rather than instances.
    """
    found = {}  # type: Dict[str, Any]
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.ispkg or info.name.startswith("_"):
            continue
        where = "{}/{}.py".format(package.__name__.replace(".", "/"), info.name)
        try:
            module = importlib.import_module("{}.{}".format(package.__name__, info.name))
        except Exception as exc:  # a broken plugin must name itself, whatever it raised
            raise PluginError(f"{where}: cannot be imported: {type(exc).__name__}: {exc}") from exc
        plugin = getattr(module, attribute, None)
        if plugin is None:
            _check_helper(module, where, attribute, kind)
            continue
        if not _is_plugin(plugin, kind, classes):
            what = "a subclass" if classes else "an instance"
            raise PluginError(f"{where}: {attribute} must be {what} of {kind.__module__}.{kind.__name__}")
        if plugin.name != info.name:
            raise PluginError(f"{where}: {attribute}.name is {plugin.name!r}; it must equal the module name")
        found[info.name] = plugin
    return found


def _is_plugin(value: Any, kind: type, classes: bool) -> bool:
    """Whether ``value`` is a plugin of ``kind``: a subclass of it if ``classes``, else an instance."""
    if classes:
        return isinstance(value, type) and issubclass(value, kind)
    return isinstance(value, kind)


def _check_helper(module: ModuleType, where: str, attribute: str, kind: type) -> None:
    """PluginError when ``module`` defines a named subclass of ``kind`` but does not expose it."""
    for value in vars(module).values():
        if not (isinstance(value, type) and issubclass(value, kind) and value.__module__ == module.__name__):
            continue
        name = getattr(value, "name", "")  # type: Any
        if name:
            raise PluginError(f"{where}: defines {value.__name__} ({name!r}) but exposes no {attribute}")
