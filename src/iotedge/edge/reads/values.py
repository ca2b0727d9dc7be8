"""Multi-value parameters, as the REST API and the Grafana targets both take them.

One value, ``a,b`` (csv), ``(a|b)`` (Grafana's regex formatter, values escaped),
``{a,b}`` (glob formatter) or ``["a","b"]`` (json, as simPod puts multi-value variables in
payloads); ``*``, ``$__all`` and the empty string mean all.
"""

import json
import re

__all__ = ["split_values"]

_ALL = {"", "*", "$__all", "__all"}
_ESCAPE = re.compile(r"\\(.)")
_MAX_VALUES = 10_000


def _unescape(value: str) -> str:
    return _ESCAPE.sub(r"\1", value)


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, index = [], [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def split_values(text: str | None) -> tuple[str, ...] | None:
    """The values of a (possibly multi-value) parameter; None means "all".

    Accepts ``a``, ``a,b`` (csv), ``(a|b)`` (Grafana's regex format, values escaped),
    ``{a,b}`` (glob format), ``["a","b"]`` (json format, as simPod puts multi-value
    variables in payloads); ``*``, ``$__all`` and the empty string mean all.
    """
    if text is None or text.strip() in _ALL:
        return None
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        raw = _json_list(value)
    elif value.startswith("(") and value.endswith(")"):
        raw = _split_unescaped(value[1:-1], "|")
    elif value.startswith("{") and value.endswith("}"):
        raw = _split_unescaped(value[1:-1], ",")
    else:
        raw = _split_unescaped(value, ",")
    values = dict.fromkeys(_unescape(part).strip() for part in raw[:_MAX_VALUES])
    values.pop("", None)
    return tuple(values) if values else None


def _json_list(text: str) -> list[str]:
    try:
        items = json.loads(text)
    except ValueError:
        return [text]
    return [str(item) for item in items] if isinstance(items, list) else [text]
