"""
What Python 3.10 lacks and the package uses: a string-valued enum and a TOML
parser. Nothing here is public.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by the py310 tox environment
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["StringEnum", "tomllib"]


class StringEnum(str, Enum):
    """
    An enum whose members are strings: each compares equal to its value
    (C{state == "open"}), and C{str()} and f-strings give the value, as
    C{enum.StrEnum} (Python 3.11+) does.
    """

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(self, spec)
