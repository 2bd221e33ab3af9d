"""tidegate: traffic scheduling across the many instances of a server program."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__version__ = "0.1.0"


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
    """Use the modules compiled by scripts/build_native.py only while their sources are unchanged.

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
    if changed and not pure:
        print(
            f"tidegate: {len(changed)} compiled module(s) are older than their source "
            f"({', '.join(changed[:3])}{', …' if len(changed) > 3 else ''}); running the pure-Python "
            "modules instead (scripts/build_native.py compiles them again)",
            file=sys.stderr,
        )
    sys.meta_path.insert(0, _Sources(root, set(recorded)))


_native_guard()
