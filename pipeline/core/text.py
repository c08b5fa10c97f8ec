"""Any file name as CSV text: valid UTF-8, one line, and back to the same name.

Python reads a name's bytes that are not UTF-8 as lone surrogates (surrogateescape). In a
CSV cell they, control characters (a carriage return splits a row) and the backslash are
written `\\xNN` (the byte or character NN) and `\\\\`; every other character is itself.
"""

import re

_ESCAPED = re.compile(r"[\\\x00-\x1f\x7f\udc80-\udcff]")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")


def escape(value: str) -> str:
    """`value` as CSV text (see the module docstring)."""
    return _ESCAPED.sub(_escape_one, value)


def unescape(text: str) -> str:
    """The value `escape` wrote as `text`."""
    return _ESCAPE.sub(_unescape_one, text) if "\\" in text else text


def _escape_one(match: re.Match) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}"


def _unescape_one(match: re.Match) -> str:
    token = match.group(1)
    if token == "\\":
        return "\\"
    code = int(token[1:], 16)
    return chr(0xDC00 + code if code >= 0x80 else code)
