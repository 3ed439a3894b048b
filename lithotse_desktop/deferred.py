"""Libraries imported when first used rather than when the module naming them is imported.

Every command imports the plugins and the core modules it runs, so a library imported at the top
of any of them is paid for by every command, whether that command calls it or not:
``pyarrow.compute`` wraps each of its ~290 kernels in Python as it is imported (about 40 ms of a
one-second build), a spreadsheet parser or an HL7 library a few more. A module that needs one of
them only inside some functions names it with :func:`deferred_import` instead.

Python 3.11's ``importlib.util.LazyLoader`` does not serve here: the import system reads
``__spec__`` of a module already in ``sys.modules``, which loads a lazy module, so a single plain
``import pyarrow.compute`` anywhere would undo the saving. The stand-in returned here is never put
in ``sys.modules``; it imports the real module on its first attribute read and keeps each
attribute read, so later reads cost what a module's do.
"""

from __future__ import annotations

import importlib
from typing import Any


class _Deferred:
    """Stands for the module ``name`` until an attribute is read from it."""

    def __init__(self, name: str) -> None:
        self.__name__ = name

    def __getattr__(self, attr: str) -> Any:
        name = self.__dict__.get("__name__")
        if name is None:  # a copy or an unpickled stand-in, probed before its state is set
            raise AttributeError(attr)
        value = getattr(importlib.import_module(name), attr)
        setattr(self, attr, value)
        return value

    def __repr__(self) -> str:
        return f"<module {self.__name__!r}, imported on first use>"


def deferred_import(name: str) -> Any:
    """The module ``name``, imported the first time one of its attributes is read.

    Use it for a module-level name (``pc = deferred_import("pyarrow.compute")``); where annotations
    name the module's types, import it for type checkers too (``if TYPE_CHECKING: import x``).
    An error importing it is raised at that first read, as the plain import would have raised it.
    """
    return _Deferred(name)


pyarrow_compute = deferred_import("pyarrow.compute")
"""``pyarrow.compute``, which the core's modules name as ``pc`` (one stand-in, its attributes kept once)."""
