"""What a route's regex contains: constructs RE2 refuses, and sample strings it matches.

Python's own regex parser (``re._parser``: private, but stable across the supported Pythons)
does both; a parse it does not understand only means fewer samples, never a wrong answer,
because every sample is checked against the regex before use.

>>> regex_samples("^/items/[0-9]+$"), re2_unsupported("^/(?!admin).*")
(['/items/0'], 'a lookaround')
"""

from __future__ import annotations

import re
from typing import Any


def _parse(regex: str) -> Any:
    from re import _parser  # type: ignore[attr-defined]

    return _parser.parse(regex)


_RE2_LACKS = {
    "ASSERT": "a lookaround",
    "ASSERT_NOT": "a lookaround",
    "GROUPREF": "a backreference",
    "GROUPREF_EXISTS": "a conditional group",
    "ATOMIC_GROUP": "an atomic group",
    "POSSESSIVE_REPEAT": "a possessive repeat",
}


def re2_unsupported(regex: str) -> str | None:
    """The first construct of ``regex`` that RE2 refuses, or ``None``."""
    stack = [_parse(regex)]
    while stack:
        for op, arg in stack.pop():
            found = _RE2_LACKS.get(str(op))
            if found:
                return found
            stack.extend(_children(arg))
    return None


def _children(arg: Any) -> list[Any]:
    """Sub-patterns inside one parsed node's argument."""
    out = []
    items = arg if isinstance(arg, (tuple, list)) else (arg,)
    for item in items:
        if hasattr(item, "data"):  # a SubPattern
            out.append(item)
        elif isinstance(item, (tuple, list)):
            out.extend(_children(item))
    return out


_CANDIDATES = "a0/-_.~Az9 "


def regex_samples(regex: str) -> list[str]:
    """A few strings through ``regex``: for each choice of branch (first, second, third) its
    shortest string and one with every repeat taken once."""
    try:
        tree = _parse(regex)
    except re.error:
        return []
    out = []
    for branch in range(3):
        for once in (False, True):
            text = _build(tree, branch, once)
            if text is not None and text not in out:
                out.append(text)
    return out


def _build(tree: Any, branch: int, once: bool) -> str | None:
    parts = []
    for op, arg in tree:
        name = str(op)
        if name == "LITERAL":
            parts.append(chr(arg))
        elif name in ("NOT_LITERAL", "ANY", "IN"):
            char = next((c for c in _candidates(name, arg) if _accepts(name, arg, c)), None)
            if char is None:
                return None
            parts.append(char)
        elif name == "SUBPATTERN":
            inner = _build(arg[-1], branch, once)
            if inner is None:
                return None
            parts.append(inner)
        elif name == "BRANCH":
            alternatives = arg[1]
            inner = _build(alternatives[branch % len(alternatives)], branch, once)
            if inner is None:
                return None
            parts.append(inner)
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, sub = arg
            count = max(low, 1) if once else low
            count = min(count, high)
            inner = _build(sub, branch, once)
            if inner is None:
                return None
            parts.append(inner * count)
        elif name != "AT":
            return None  # categories outside a set and the like: no sample
    return "".join(parts)


def _candidates(op: str, arg: Any) -> str:
    """A set's own first character first, so that a sample stays inside narrow ranges."""
    if op == "IN" and arg and str(arg[0][0]) == "LITERAL":
        return chr(arg[0][1]) + _CANDIDATES
    if op == "IN" and arg and str(arg[0][0]) == "RANGE":
        return chr(arg[0][1][0]) + _CANDIDATES
    return _CANDIDATES


def _accepts(op: str, arg: Any, char: str) -> bool:
    if op == "NOT_LITERAL":
        return bool(ord(char) != arg)
    if op == "ANY":
        return char != "\n"
    return re.fullmatch(_set_regex(arg), char) is not None


def _set_regex(items: Any) -> str:
    """A character set's parsed items back as a ``[...]`` class."""
    negate = ""
    body = ""
    categories = {
        "CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_WORD": r"\w",
        "CATEGORY_NOT_WORD": r"\W", "CATEGORY_SPACE": r"\s", "CATEGORY_NOT_SPACE": r"\S",
    }
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            negate = "^"
        elif name == "LITERAL":
            body += re.escape(chr(arg))
        elif name == "RANGE":
            body += f"{re.escape(chr(arg[0]))}-{re.escape(chr(arg[1]))}"
        elif name == "CATEGORY":
            body += categories.get(str(arg), "")
    return f"[{negate}{body}]" if body else "[^\\s\\S]"
