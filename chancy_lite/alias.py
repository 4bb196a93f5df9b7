"""Run code written for Chancy unchanged: make ``import chancy`` (and ``chancy.app``, ``chancy.plugins.retry``, …)
load the same-named chancy_lite modules.

Opt in, one of:

* ``chancy_lite.alias.install()`` early in your process (a ``conftest.py``, a ``main.py``);
* ``pytest --chancy-lite-as-chancy``, or ``CHANCY_LITE_AS_CHANCY=1`` in pytest's environment (the pytest plugin
  ``chancy_lite.pytest_plugin``, registered when chancy_lite is installed, does nothing otherwise).

Worker children of a process with the alias installed install it too, before they import job modules, so a job
module that says ``from chancy import job, QueuedJob`` imports there as well. The alias maps module names only:
a Postgres DSN is still refused (give the file path instead), and ``chancy.X`` for a module chancy_lite does not
have raises ``ModuleNotFoundError`` naming both.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Mapping, Sequence

ALIAS = "chancy"
TARGET = "chancy_lite"


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target
        self.real_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self.target)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """The module is chancy_lite's, already executed: give it back its own spec (the import set ours)."""
        if self.real_spec is not None:
            module.__spec__ = self.real_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        real = TARGET + fullname[len(ALIAS):]
        real_spec = importlib.util.find_spec(real)
        if real_spec is None:
            return None  # "No module named 'chancy.…'": chancy_lite has no such module
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(real), is_package=real_spec.submodule_search_locations is not None
        )


_FINDER = _AliasFinder()


def install() -> None:
    """Make ``import chancy…`` load chancy_lite (idempotent). Chancy modules imported before stay as they are."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in [n for n in sys.modules if n == ALIAS or n.startswith(ALIAS + ".")]:
        del sys.modules[name]


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether ``CHANCY_LITE_AS_CHANCY`` asks for the alias (1, true, yes, on; anything else: no)."""
    return environ.get("CHANCY_LITE_AS_CHANCY", "").strip().lower() in ("1", "true", "yes", "on")


def installed() -> bool:
    return _FINDER in sys.meta_path
