"""Compile the HTTP gateway's hot path with mypyc, next to its sources; record what was compiled.

    python scripts/build_native.py          # build if a source changed since the last build
    python scripts/build_native.py --clean  # remove the compiled modules (pure Python again)

The modules stay ordinary typed Python: mypyc turns their classes into native ones (attributes
in a C struct, calls between them direct), which is where a proxied request's own CPU time went.
Without a C compiler the build fails and tidegate runs as pure Python, only slower.

A compiled module shadows its source. So the build writes the hash of every source it compiled
into `tidegate/_native.json`, and `tidegate/__init__.py` refuses compiled modules whose source
has changed since (it imports the sources instead and says so): an edit is never hidden.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
GROUP = "tidegate_native"
MANIFEST = SRC / "tidegate" / "_native.json"

# What one proxied request runs through: listed once, in pyproject.toml, for this script and for
# the build backend (setup.py), which compiles the same modules into the wheel.
with open(SRC.parent / "pyproject.toml", "rb") as _f:
    MODULES: list[str] = tomllib.load(_f)["tool"]["tidegate"]["native-modules"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _module(rel: str) -> str:
    return rel.removesuffix(".py").replace("/", ".")


def _built() -> list[Path]:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    out = [SRC / (rel.removesuffix(".py") + suffix) for rel in MODULES]
    return [*out, SRC / f"{GROUP}__mypyc{suffix}"]


def clean() -> None:
    for path in _built():
        path.unlink(missing_ok=True)
    MANIFEST.unlink(missing_ok=True)


def up_to_date() -> bool:
    if not MANIFEST.exists() or not all(p.exists() for p in _built()):
        return False
    try:
        recorded = json.loads(MANIFEST.read_text())["modules"]
    except (ValueError, KeyError):
        return False
    return recorded == {_module(rel): _digest(SRC / rel) for rel in MODULES}


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    clean()
    digests = {_module(rel): _digest(SRC / rel) for rel in MODULES}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="tidegate-native-") as tmp:
        os.chdir(SRC)
        try:
            setup(
                name="tidegate-native",
                ext_modules=mypycify(MODULES, opt_level="3", group_name=GROUP),
                script_args=["build_ext", "--inplace", "--build-temp", tmp, "--build-lib", tmp, "-q"],
            )
        finally:
            os.chdir(cwd)
            shutil.rmtree(SRC / ".mypy_cache", ignore_errors=True)
            shutil.rmtree(SRC / "build", ignore_errors=True)
    MANIFEST.write_text(json.dumps({"group": GROUP, "modules": digests}, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", action="store_true", help="remove the compiled modules")
    ap.add_argument("--force", action="store_true", help="build even when up to date")
    ap.add_argument("--verbose", action="store_true", help="show the compiler's output")
    args = ap.parse_args()
    if args.clean:
        clean()
        return 0
    if not args.force and up_to_date():
        return 0
    if not args.verbose:
        # mypyc and the C compiler print a page per module: keep it for when the build fails.
        run = subprocess.run([sys.executable, __file__, "--force", "--verbose"], capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stdout[-4000:] + run.stderr[-4000:], file=sys.stderr)
        else:
            print(f"build_native: compiled {len(MODULES)} modules with mypyc", file=sys.stderr)
        return run.returncode
    try:
        build()
    except BaseException as exc:  # noqa: BLE001 (setup() exits with SystemExit on errors)
        clean()
        print(f"build_native: not compiled ({exc!r}); tidegate runs as pure Python", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
