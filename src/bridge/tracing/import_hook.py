"""Instrument a module's code as it is imported (breakpoints in code not loaded yet).

A finder at the front of ``sys.meta_path`` asks the finders behind it, as the import
system would, and wraps the loader of a module whose file holds breakpoints: that
loader compiles the module as usual (the ``.pyc`` cache is untouched) and hands the
code to ``instrument(path, code)`` before running it. Other modules pass through
with one extra function call.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from types import CodeType, ModuleType
from typing import Any, Callable, Optional, Sequence

from .scope import canonical

__all__ = ["ProbeFinder"]

#: ``instrument(canonical_path, module_code) -> code``
Instrument = Callable[[str, CodeType], CodeType]


class _ProbingLoader:
    """A source loader's stand-in that instruments the module's code before running it."""

    def __init__(self, inner: Any, path: str, instrument: Instrument) -> None:
        self._inner = inner
        self._path = path
        self._instrument = instrument

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, get_filename, ...
        return getattr(self._inner, name)

    def create_module(self, spec: Any) -> Optional[ModuleType]:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        code = self._inner.get_code(module.__name__)
        if code is None:
            raise ImportError(f"cannot load the code of {module.__name__}")
        exec(self._instrument(self._path, code), module.__dict__)


class ProbeFinder(MetaPathFinder):
    """Finds modules with the finders behind it; instruments those ``wanted`` names."""

    def __init__(self, wanted: Callable[[str], bool], instrument: Instrument) -> None:
        self._wanted = wanted
        self._instrument = instrument

    def install(self) -> None:
        """Put this finder first in ``sys.meta_path`` (once)."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        """Take this finder out of ``sys.meta_path``."""
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass

    @property
    def installed(self) -> bool:
        """Whether the finder is in ``sys.meta_path``."""
        return self in sys.meta_path

    def find_spec(self, name: str, path: Optional[Sequence[str]] = None, target: Optional[ModuleType] = None) -> Any:
        """The spec the other finders give, with an instrumenting loader where wanted."""
        finders = sys.meta_path
        try:
            rest = finders[finders.index(self) + 1:]
        except ValueError:
            return None
        for finder in rest:
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(name, path, target)
            if spec is None:
                continue
            origin = spec.origin
            if origin and spec.loader is not None and hasattr(spec.loader, "get_code") \
                    and not isinstance(spec.loader, _ProbingLoader):
                origin = canonical(origin)
                if self._wanted(origin):
                    spec.loader = _ProbingLoader(spec.loader, origin, self._instrument)
            return spec
        return None
