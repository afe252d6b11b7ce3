# -*- test-case-name: tests.test_report -*-
"""
Escaping the characters that let text from an event or an exception forge
or hide lines: in reports, and in the text log format.

A reader that splits lines the Unicode way (C{str.splitlines()}, many log
viewers) also breaks at CR, VT, FF, the file/group/record separators, NEL,
U+2028 and U+2029; a terminal obeys ANSI escape sequences (ESC, CSI) and
bidirectional overrides, isolates and marks (U+061C, U+200E, U+200F)
reorder what it shows. Each of these, and every
other C0 and C1 control character but tab and newline, is written as a
visible Python-style escape (C{\\r}, C{\\x1b}, C{\\u2028}).
"""

from __future__ import annotations

import re

__all__ = ["escapeControl"]

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_UNSAFE_WITH_NEWLINE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
#: The ASCII characters of the patterns above.
_ASCII = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])
_ASCII_WITH_NEWLINE = _ASCII + b"\n"


def _marking(unsafe: bytes) -> bytes:
    """
    A C{bytes.translate} table that changes exactly the bytes in C{unsafe}.
    """
    return bytes(c ^ 0x80 if c in unsafe else c for c in range(256))


#: Translating with these returns the very same bytes object when nothing
#: changed, that is when the text holds none of the ASCII characters above.
_MARK = _marking(_ASCII)
_MARK_WITH_NEWLINE = _marking(_ASCII_WITH_NEWLINE)
#: Called unbound: a C{str} subclass (which C{str(error)} may return) can
#: override C{isascii} and C{encode}, and make the shortcut skip its text.
_isASCII = str.isascii
_encode = str.encode
_NAMED = {"\r": "\\r", "\n": "\\n", "\x0b": "\\v", "\x0c": "\\f"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escapeControl(text: str, newlines: bool = True) -> str:
    """
    C{text} with every control character escaped, except tab and, if
    C{newlines}, newline (which the caller handles: Twisted's text format
    indents continuation lines, reports prefix each line).
    """
    if _isASCII(text):
        # Nearly every line: one pass of bytes.translate (a table lookup per
        # character) tells whether it holds any of the ASCII characters the
        # pattern matches, for a fraction of the pattern's search. With a
        # table and nothing to delete, translate is CPython's tight loop
        # (deleting builds a table of 256 entries first, on every call), and
        # it returns its input itself when no byte changed.
        data = _encode(text, "ascii")
        if data.translate(_MARK if newlines else _MARK_WITH_NEWLINE) is data:
            return text
    pattern = _UNSAFE if newlines else _UNSAFE_WITH_NEWLINE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)
