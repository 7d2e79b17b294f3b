"""Rendering strings a model controls so they cannot act on the reader's terminal or CI.

Node names, value names, dim names and paths come from the model (downloaded from
a hub, sent in a pull request).  Printed raw, a newline followed by ``::error`` is
a GitHub Actions workflow command whatever format was asked for, and ``\\x1b[2K``
erases the line above: a model could hide its own findings.  Human formats show
every control character (and Unicode bidirectional overrides, "trojan source")
as a visible escape; JSON and SARIF keep the exact text (JSON escapes it).
"""

from __future__ import annotations

import re

_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def visible(text: object) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\n``)."""
    s = str(text)
    if not _UNSAFE.search(s):
        return s
    return _UNSAFE.sub(
        lambda m: _NAMED.get(
            m.group(),
            f"\\u{ord(m.group()):04x}" if ord(m.group()) > 0xFF else f"\\x{ord(m.group()):02x}",
        ),
        s,
    )
