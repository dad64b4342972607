"""JSON from clients (the convert form's ``params``, the stream's opening and ``end`` messages).

Every setting AutoVoice takes is a number or a word, so nothing a client sends needs more than a
couple of levels; json.loads of ``[[[[...`` thousands deep raises RecursionError, which is not a
ValueError and so used to escape as a 500 / close 1011 with a traceback. Here it is one sentence.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 8  # {"params": {"x": [1]}} is depth 3


class JsonRefused(ValueError):
    """Client JSON that cannot be used; the message is one sentence for the client."""


def _depth(value: Any) -> int:
    deepest, todo = 0, [(value, 1)]
    while todo:  # iterative: no recursion on what a client sent
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                return level
            todo.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def loads(text: str | bytes, what: str, example: str) -> Any:
    """``text`` parsed, or JsonRefused naming ``what`` (e.g. "The form field 'params'") and an ``example``."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
        deep = True
    except ValueError:
        raise JsonRefused(f"{what} is not valid JSON; send e.g. {example}.") from None
    else:
        deep = _depth(value) > MAX_JSON_DEPTH
    if deep:
        raise JsonRefused(f"{what} nests JSON more than {MAX_JSON_DEPTH} levels deep; send a flat object such as {example}.")
    return value
