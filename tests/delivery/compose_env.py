"""Read compose.yaml the way Docker Compose does: .env files and ``${VAR}`` interpolation."""

import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "REPO",
    "fill_placeholders",
    "interpolate",
    "load_compose",
    "parse_env_file",
    "referenced_variables",
]

REPO = Path(__file__).resolve().parents[2]

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt},
# ${NAME+alt}, $NAME, and $$ for a literal dollar sign (the compose specification's forms).
_VARIABLE = re.compile(
    r"\$\$"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
)

# The same rule as `make env`: a value that is exactly 'change-me' gets a random key.
_PLACEHOLDER = re.compile(r"(?<==)change-me(?=[,\s]|$)", re.MULTILINE)


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file; comments, blanks and quotes handled."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"not KEY=VALUE: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def fill_placeholders(text: str) -> str:
    """``text`` with each ``=change-me`` value replaced by a random key, as `make env` does."""
    return _PLACEHOLDER.sub(lambda _: secrets.token_urlsafe(32), text)


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """``value`` with compose's ``${...}`` forms substituted from ``variables``."""

    def _one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        current = variables.get(name)
        present = current is not None
        nonempty = bool(current)
        if op in (":-", "-"):
            use_default = not nonempty if op == ":-" else not present
            return arg if use_default else str(current)
        if op in (":?", "?"):
            missing = not nonempty if op == ":?" else not present
            if missing:
                raise KeyError(f"{name}: {arg or 'required variable is not set'}")
            return str(current)
        if op in (":+", "+"):
            use_alt = nonempty if op == ":+" else present
            return arg if use_alt else ""
        return current or ""

    return _VARIABLE.sub(_one, value)


def referenced_variables(text: str) -> dict[str, str | None]:
    """Every variable that ``text`` references, with its operator (None for a bare one)."""
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer(text):
        name = match.group("braced") or match.group("named")
        if name:
            found.setdefault(name, match.group("op"))
    return found


def load_compose(path: Path | None = None) -> dict[str, Any]:
    """compose.yaml as plain data, before interpolation."""
    data = yaml.safe_load((path or REPO / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data
