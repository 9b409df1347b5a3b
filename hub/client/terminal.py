"""Text from a hub, a bundle or a file name, made safe to print on the user's terminal."""

from __future__ import annotations

import re

__all__ = ["shown"]

# C0 (but newline), DEL, C1, and the bidi controls that reorder what a terminal shows
# (Trojan Source, CVE-2021-42574): a hub, a bundle or a file name can hold any of them.
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: object) -> str:
    """``text`` safe to print on a terminal: controls become ``\\xNN`` / ``\\uNNNN`` escapes.

    Newlines stay (human output has several lines); every other C0 or C1 control and every
    bidi control is escaped, so nothing a hub, a bundle or a file name holds can move the
    cursor, retitle the window, clear the screen or reorder the text. JSON output needs
    none of this: ``json.dumps`` escapes controls itself.
    """
    return _CONTROLS.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
