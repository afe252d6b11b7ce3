"""
Build the API reference with pydoctor (Twisted's documentation tool) into
C{apidocs/}, and fail on any warning or on any public name or parameter that
is not documented.

    python docs/apidocs.py

Links into Twisted go to its published reference, from inventories made here
of the parts of the installed Twisted the docstrings name (no network).
"""

from __future__ import annotations

import enum
import inspect
import os
import re
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import attrs
from zope.interface import implementedBy
from zope.interface.interface import InterfaceClass

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "twisted_safelog"
OUTPUT = ROOT / "apidocs"
TWISTED_API = "https://docs.twisted.org/en/stable/api/"
PYTHON_DOCS = "https://docs.python.org/3/"


def pydoctor(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pydoctor", "-q", *args], check=True)


def twistedInventories(work: Path) -> list[str]:
    """
    Intersphinx inventories for the Twisted packages the docstrings link to.
    """
    import twisted

    site = Path(twisted.__file__).parent
    parts = {
        "logger": ("twisted", [site / "logger"]),
        "python": ("twisted", [site / "python"]),
        "internet": ("twisted.internet", [site / "internet" / "interfaces.py"]),
        "task": ("twisted.internet", [site / "internet" / "task.py"]),
    }
    files = []
    for name, (prefix, sources) in parts.items():
        out = work / name
        pydoctor(
            "--make-intersphinx",
            "--project-name=Twisted",
            f"--html-output={out}",
            f"--prepend-package={prefix}",
            *map(str, sources),
        )
        files.append(f"--intersphinx-file={out / 'objects.inv'}::{TWISTED_API}")
    # Modules pydoctor cannot index on their own, by hand.
    extra = [
        "twisted.internet.threads.deferToThread py:function 1 "
        "twisted.internet.threads.html#deferToThread -",
    ]
    files.append(
        f"--intersphinx-file={writeInventory(work / 'extra.inv', 'Twisted', extra)}::{TWISTED_API}"
    )
    return files


def writeInventory(path: Path, project: str, lines: list[str]) -> Path:
    """
    Write a Sphinx inventory (version 2) of C{lines} to C{path}.
    """
    header = f"# Sphinx inventory version 2\n# Project: {project}\n# Version: 0\n".encode()
    header += b"# The remainder of this file is compressed using zlib.\n"
    path.write_bytes(header + zlib.compress(("\n".join(lines) + "\n").encode()))
    return path


def pythonInventory(work: Path) -> str:
    """
    A small inventory for the Python names the docstrings link to: the
    built-in constants and stdlib logging's classes.
    """
    lines = [
        f"{name} py:data 1 library/constants.html#{name} -" for name in ("None", "True", "False")
    ]
    lines += [
        f"logging.{name} py:class 1 library/logging.html#$ -"
        for name in ("LogRecord", "Handler", "Logger", "Formatter", "Filter")
    ]
    lines += [
        f"logging.handlers.{name} py:class 1 library/logging.handlers.html#$ -"
        for name in ("RotatingFileHandler", "WatchedFileHandler", "SysLogHandler")
    ]
    header = b"# Sphinx inventory version 2\n# Project: Python\n# Version: 3\n"
    header += b"# The remainder of this file is compressed using zlib.\n"
    path = work / "python.inv"
    path.write_bytes(header + zlib.compress(("\n".join(lines) + "\n").encode()))
    return f"--intersphinx-file={path}::{PYTHON_DOCS}"


def undocumented() -> list[str]:
    """
    Public names without a docstring and public parameters no C{@param}
    names, in the public modules (what C{__all__} exports).
    """
    import importlib

    sys.path.insert(0, str(ROOT / "src"))
    missing = []
    for moduleName in (
        "twisted_safelog",
        "twisted_safelog.testing",
        "twisted_safelog.incident",
        "twisted_safelog.prometheus",
    ):
        try:
            module = importlib.import_module(moduleName)
        except ImportError as error:  # an extra that is not installed
            missing.append(f"{moduleName}: cannot import ({error})")
            continue
        if not module.__doc__:
            missing.append(moduleName)
        for name in getattr(module, "__all__", []):
            value = getattr(module, name)
            where = f"{moduleName}.{name}"
            if (
                inspect.isclass(value)
                or inspect.isfunction(value)
                or isinstance(value, InterfaceClass)
            ):
                missing += checkCallable(where, value)
                if inspect.isclass(value):
                    for attr, member in list(vars(value).items()):
                        if attr.startswith("_") or not inspect.isfunction(member):
                            continue
                        if not member.__doc__ and any(
                            attr in interface.names() and interface[attr].getDoc()
                            for interface in implementedBy(value).flattened()
                        ):
                            continue  # documented by the interface it implements
                        missing += checkCallable(f"{where}.{attr}", member)
    return missing


def checkCallable(where: str, value: Any) -> list[str]:
    """
    A class or function must have a docstring (its own or inherited), and
    every parameter must be named by an C{@param} (or, for a class, an
    C{@ivar} or a C{#:} comment on an attrs field); C{**keywords} by an
    C{@param} or C{@keyword}.
    """
    if isinstance(value, InterfaceClass):
        if not (value.__doc__ or "").strip():
            return [f"{where}: no docstring"]
        return [
            f"{where}.{name}: no docstring"
            for name in value.names()
            if not (value[name].getDoc() or "").strip()
        ]
    if not (inspect.getdoc(value) or "").strip():
        return [f"{where}: no docstring"]
    if inspect.isclass(value) and (
        issubclass(value, (enum.Enum, BaseException)) or getattr(value, "_is_protocol", False)
    ):
        return []
    if inspect.isfunction(value) and not (value.__doc__ or "").strip():
        return []  # overrides a documented method: its documentation holds
    target = value.__init__ if inspect.isclass(value) else value
    if inspect.isclass(value) and not inspect.isfunction(target):
        return []
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return []
    docs = inspect.getdoc(value) or ""
    # "The parameters not listed here are L{Other}'s": Other documents them.
    seen: set[str] = set()
    while True:
        others = set(re.findall(r"parameters not listed here are L\{(\w+)\}'s", docs)) - seen
        if not others:
            break
        for other in others:
            seen.add(other)
            docs += "\n" + (inspect.getdoc(getattr(sys.modules["twisted_safelog"], other)) or "")
    if inspect.isclass(value):
        docs += "\n" + (inspect.getdoc(target) or "")
        if attrs.has(value):
            source = inspect.getsource(value)
            docs += "\n" + "\n".join(
                f"@ivar {name}:"
                for name in re.findall(r"#:[^\n]*\n(?:\s*#:[^\n]*\n)*\s*(\w+)\s*:", source)
            )
    problems = []
    for parameter in parameters.values():
        if parameter.name in ("self", "cls") or parameter.kind is parameter.VAR_POSITIONAL:
            continue
        if parameter.kind is parameter.VAR_KEYWORD:
            if f"@param {parameter.name}:" not in docs and "@keyword" not in docs:
                problems.append(f"{where}: **{parameter.name} not documented")
            continue
        if f"@param {parameter.name}:" not in docs and f"@ivar {parameter.name}:" not in docs:
            problems.append(f"{where}: parameter {parameter.name} not documented")
    return problems


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="safelog-docs-") as tmp:
        work = Path(tmp)
        inventories = [*twistedInventories(work), pythonInventory(work)]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pydoctor",
                "--project-name=twisted-safelog",
                "--project-url=https://github.com/twisted-safelog/twisted-safelog",
                "--docformat=epytext",
                "--warnings-as-errors",
                f"--html-output={OUTPUT}",
                "-q",
                *inventories,
                str(PACKAGE),
            ],
            cwd=ROOT,
        )
    if result.returncode:
        print(f"pydoctor warned (exit status {result.returncode}); see above", file=sys.stderr)
        return 1
    missing = undocumented()
    for line in missing:
        print(f"undocumented: {line}", file=sys.stderr)
    if missing:
        return 1
    print(f"API reference: {OUTPUT / 'index.html'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
