"""The build backend's one hook: the wheel carries the gateway's hot path compiled with mypyc.

As black ships its wheels: setuptools builds the modules listed in pyproject.toml
([tool.tidegate] native-modules, the list scripts/build_native.py compiles in place for a source
tree) as C extensions with mypyc, next to their .py files, and records their digests in
tidegate/_native.json so that tidegate/__init__.py's guard accepts them once installed (and
refuses them if an installed source is later edited).

The wheel is pure Python (py3-none-any) instead, and tidegate runs as such, only slower, when:
- TIDEGATE_COMPILE=0 is set (a pure wheel on purpose, e.g. for another platform);
- no C compiler works (a file including Python.h is compiled first, with CC as the build uses it);
- mypyc cannot be imported (a build without the build-system requirements);
- the install is editable: a source tree compiles with scripts/build_native.py, which writes the
  same manifest beside the sources.
A compiler that works on the probe but fails on the modules fails the build: that is a defect to
see, not a fallback.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SRC = ROOT / "src"
GROUP = "tidegate_native"


def native_modules() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        modules: list[str] = tomllib.load(f)["tool"]["tidegate"]["native-modules"]
    return modules


def _compiler_works() -> str | None:
    """None when a C compiler builds a Python extension source here, else why not."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.errors import CCompilerError, DistutilsError
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory(prefix="tidegate-cc-") as tmp:
        probe = Path(tmp) / "probe.c"
        probe.write_text("#include <Python.h>\nint tidegate_probe(void) { return 0; }\n")
        try:
            compiler.compile(
                [str(probe)], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]]
            )
        except (CCompilerError, DistutilsError, OSError) as exc:
            return f"no working C compiler ({exc})"
    return None


def _why_pure() -> str | None:
    if os.environ.get("TIDEGATE_COMPILE", "1") == "0":
        return "TIDEGATE_COMPILE=0"
    if "editable_wheel" in sys.argv:
        return "an editable install (scripts/build_native.py compiles a source tree)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed"
    return _compiler_works()


def manifest(modules: list[str]) -> str:
    """tidegate/_native.json: each compiled module's source digest (tidegate/__init__.py)."""
    digests = {
        rel.removesuffix(".py").replace("/", "."): hashlib.sha256((SRC / rel).read_bytes()).hexdigest()
        for rel in modules
    }
    return json.dumps({"group": GROUP, "modules": digests}, indent=1) + "\n"


class _BuildPyWithManifest(build_py):
    """Also writes tidegate/_native.json into the wheel, beside the compiled modules."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "tidegate" / "_native.json"
        target.write_text(manifest(native_modules()))


def main() -> None:
    if not {"bdist_wheel", "build", "build_ext", "install"} & set(sys.argv):
        setup()  # metadata, an sdist: nothing to compile (and mypyc takes a while)
        return
    why = _why_pure()
    if why is not None:
        print(f"tidegate: building pure Python: {why}", file=sys.stderr)
        setup()
        return
    from mypyc.build import mypycify

    modules = native_modules()
    # mypyc names each module from its path under src/ (tidegate/http/plain.py → tidegate.http.plain).
    paths = [str(Path("src") / rel) for rel in modules]
    setup(
        ext_modules=mypycify(paths, opt_level="3", group_name=GROUP),
        cmdclass={"build_py": _BuildPyWithManifest},
    )


main()
