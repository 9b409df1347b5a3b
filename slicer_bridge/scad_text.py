"""Linear scans of OpenSCAD source text: comments, string literals, line numbers, brackets. Pure.

A design's source is hostile input that the hub and the node read before anything renders it,
so every function here takes time linear in the text: no regular expression is tried again from
each position of an unbounded run (``"\\"\\"\\"…`` once took minutes through a string pattern, and
``include<`` repeated an hour through an include pattern), no search restarts from the top for
each statement (line numbers come from one index of the newlines), and a call's arguments are
found from one pass over the brackets, not by scanning to its end again for each call.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["Brackets", "Lines", "Scanned", "map_strings", "scan", "string_spans"]

_BODY = re.compile(r'(?:[^"\\]++|\\.)*+\\?', re.DOTALL)  # a literal's body: up to its closing quote or the end
_NEXT = re.compile(r'"|//|/\*')
_NOT_NEWLINE = re.compile(r"[^\n]")
_BRACKET = re.compile(r"[()\[\]{},]")


def string_spans(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, closed) of each string literal: ``text[start:end]`` with its quotes; an unclosed
    one runs to the end of the text."""
    i = text.find('"')
    while i >= 0:
        end = _BODY.match(text, i + 1).end()  # type: ignore[union-attr]  # the pattern matches empty
        closed = end < len(text)
        yield i, end + 1 if closed else end, closed
        i = text.find('"', end + 1) if closed else -1


def map_strings(text: str, replace: Callable[[str], str]) -> str:
    """``text`` with each closed string literal (quotes included) replaced by ``replace(literal)``."""
    out, at = [], 0
    for start, end, closed in string_spans(text):
        if closed:
            out += [text[at:start], replace(text[start:end])]
            at = end
    out.append(text[at:])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Scanned:
    """The source with comments blanked (``code``: newlines kept, strings untouched) and, in
    ``masked``, every string literal's body blanked too (statements are looked for outside strings);
    ``literals``: the (start, end) of each closed string literal in both."""

    code: str
    masked: str
    literals: tuple[tuple[int, int], ...]


def scan(source: str) -> Scanned:
    """Comments and string literals of an OpenSCAD source, found in one pass."""
    code: list[str] = []
    masked: list[str] = []
    literals: list[tuple[int, int]] = []
    i, n = 0, len(source)
    while i < n:
        found = _NEXT.search(source, i)
        start = n if found is None else found.start()
        code.append(source[i:start])
        masked.append(source[i:start])
        if found is None:
            break
        if found.group() == '"':
            body_end = _BODY.match(source, start + 1).end()  # type: ignore[union-attr]
            end = min(body_end + 1, n)
            code.append(source[start:end])
            masked.append('"' + "x" * (end - start - 2) + '"' if body_end < n else '"' + "x" * (end - start - 1))
            if body_end < n:
                literals.append((start, end))
        else:
            closing = source.find("\n", start) if found.group() == "//" else source.find("*/", start + 2)
            end = n if closing < 0 else closing if found.group() == "//" else closing + 2
            blank = _NOT_NEWLINE.sub(" ", source[start:end])
            code.append(blank)
            masked.append(blank)
        i = end
    return Scanned("".join(code), "".join(masked), tuple(literals))


@dataclass(frozen=True)
class Lines:
    """Line numbers of positions in one text, from one index of its newlines."""

    text: str
    _newlines: list[int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_newlines", [m.start() for m in re.finditer("\n", self.text)])

    def of(self, position: int) -> int:
        """The 1-based line of ``position``."""
        return bisect.bisect_left(self._newlines, position) + 1


class Brackets:
    """Where each bracket of a (masked) text closes and the commas directly inside it, in one pass.

    An unclosed bracket runs to the end of the text; a stray closing one is ignored.
    """

    def __init__(self, masked: str) -> None:
        self._end = len(masked)
        self._close: dict[int, int] = {}
        self._commas: dict[int, list[int]] = {}
        stack: list[int] = []
        for m in _BRACKET.finditer(masked):
            c, at = m.group(), m.start()
            if c in "([{":
                stack.append(at)
            elif c == ",":
                if stack:
                    self._commas.setdefault(stack[-1], []).append(at)
            elif stack:
                self._close[stack.pop()] = at

    def arguments(self, opening: int) -> list[tuple[int, int]]:
        """(start, end) of each comma-separated part directly inside the bracket at ``opening``."""
        cuts = [opening, *self._commas.get(opening, ()), self._close.get(opening, self._end)]
        return [(a + 1, b) for a, b in itertools.pairwise(cuts)]
