"""State keys built from ids, in one place, so no id can collide with another key.

Ids are opaque strings a platform chooses: they may hold tabs, backslashes or any Unicode.
A key joins its parts with a tab after escaping each part's own tabs and backslashes, so
``key("a\\tb", "c")`` and ``key("a", "b\\tc")`` differ and :func:`parts` gives back exactly
what went in. Keys stay readable in a changelog (``weibo\\to\\torder-1``).
"""

from __future__ import annotations

import re

SEP = "\t"
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def esc(part: str) -> str:
    """One part of a key, escaped: for hot paths that build keys with an f-string
    (``f"{prefix}a{SEP}{esc(account)}"``); :func:`key` is the same for a whole key."""
    if "\\" in part or SEP in part:
        return part.replace("\\", "\\\\").replace(SEP, "\\t")
    return part


def key(*parts: str) -> str:
    """One state key from its parts (kind names and ids)."""
    joined = SEP.join(parts)
    if "\\" not in joined and joined.count(SEP) == len(parts) - 1:  # no part to escape (nearly always)
        return joined
    return SEP.join(esc(p) for p in parts)


def parts(state_key: str) -> list[str]:
    """The parts :func:`key` was given."""
    if "\\" not in state_key:  # nothing escaped (nearly always)
        return state_key.split(SEP)
    return [_ESCAPED.sub(lambda m: SEP if m.group(1) == "t" else m.group(1), p) if "\\" in p else p
            for p in state_key.split(SEP)]


def scoped(*parts_: str) -> str:
    """An unambiguous string for several ids where no separator is wanted (hash inputs, dict keys
    inside a record): each part prefixed with its length."""
    return "".join([f"{len(p)}:{p}" for p in parts_])
