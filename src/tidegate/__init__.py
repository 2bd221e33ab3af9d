"""tidegate: traffic scheduling across the many instances of a server program."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__version__ = "0.1.0"

# Why the compiled modules beside the sources are not used (None: used, or there are none).
_refused: str | None = None


class _Sources(importlib.abc.MetaPathFinder):
    """Imports these modules from their .py files, past the compiled ones beside them."""

    def __init__(self, root: Path, names: set[str]) -> None:
        self.root = root
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        return importlib.util.spec_from_file_location(
            fullname, self.root / (fullname.replace(".", "/") + ".py")
        )


def _native_guard() -> None:
    """Use the compiled modules only while their sources are unchanged.

    They come from scripts/build_native.py in a source tree or from the wheel's build (setup.py);
    both record each compiled source's digest in _native.json.

    A compiled module shadows its .py file, and the compiled modules call each other directly, so
    one edited source means none of them may be used: all are then imported from source (and this
    says so once). TIDEGATE_PURE=1 does the same on purpose (tests of the pure-Python path).
    """
    manifest = Path(__file__).with_name("_native.json")
    if not manifest.exists():
        return
    root = Path(__file__).resolve().parent.parent
    try:
        recorded: dict[str, str] = json.loads(manifest.read_text())["modules"]
    except (OSError, ValueError, KeyError):
        recorded = {}
    pure = os.environ.get("TIDEGATE_PURE") == "1"
    changed = [
        name
        for name, digest in recorded.items()
        if not (p := root / (name.replace(".", "/") + ".py")).exists()
        or hashlib.sha256(p.read_bytes()).hexdigest() != digest
    ]
    if not (pure or changed or not recorded):
        return
    global _refused
    if pure:
        _refused = "TIDEGATE_PURE=1"
    elif changed:
        _refused = f"{len(changed)} compiled module(s) older than their source"
        # Before any logging is set up this reaches stderr through logging's last resort.
        logging.getLogger("tidegate").warning(
            "tidegate: %s (%s%s); running the pure-Python modules instead (scripts/build_native.py "
            "compiles them again)",
            _refused,
            ", ".join(changed[:3]),
            ", …" if len(changed) > 3 else "",
        )
    else:
        _refused = "unreadable _native.json"
    sys.meta_path.insert(0, _Sources(root, set(recorded)))


def hot_path() -> str:
    """How the gateway's per-request modules run: "compiled" (mypyc) or "pure Python (why)"."""
    from tidegate.http import exchange

    if not exchange.__file__ or exchange.__file__.endswith(".py"):
        return f"pure Python ({_refused or 'not compiled'})"
    return "compiled"


_native_guard()
