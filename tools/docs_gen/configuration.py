"""Render docs/configuration.md from the settings models, the click commands and the rules model."""

import dataclasses
import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from iotedge.config import (
    EDGE_ENV_PREFIX,
    SIM_ENV_PREFIX,
    EdgeSettings,
    SimSettings,
    env_name,
    setting_fields,
)
from iotedge.edge.auth import KeyRecord
from iotedge.edge.rules import DEFAULT_RULES, RuleSet
from tools.docs_gen.markdown import GENERATED_NOTE, code, compact_json, table

__all__ = ["click_options", "render_configuration", "settings_commands"]

_INTRO = """\
# Configuration

Every setting of `iotedge sim` and `iotedge edge`, its command-line flag, its environment
variable, its default and what it does; then the other commands, the rules file and the
keys file. This page is generated from the code (`SimSettings` and `EdgeSettings` in
`src/iotedge/config.py`, the click commands in `src/iotedge/cli.py`, `RuleSet` in
`src/iotedge/edge/rules.py`).

## How settings are read

- **Precedence:** a command-line flag wins over its environment variable, which wins over
  the default. Every flag of `iotedge sim` has the twin `IOTEDGE_SIM_<FLAG>`, every flag of
  `iotedge edge` the twin `IOTEDGE_<FLAG>` (upper case, `-` becomes `_`):
  `--poll-interval 2s` and `IOTEDGE_POLL_INTERVAL=2s` are the same. Settings marked
  "environment only" have no flag: they are secrets, kept out of `ps` listings and shell
  history.
- **Durations** accept a number of seconds or a suffix: `250ms`, `5s`, `15m`, `2h`, `7d`.
- **Lists** (mail recipients, garbage kinds) are comma-separated.
- **Validation happens at start-up.** A bad value stops the command with a message naming
  the flag or variable it came from, e.g.
  `invalid configuration: environment variable IOTEDGE_POLL_INTERVAL: ...`.
- The global option `--log-level` (or `IOTEDGE_LOG_LEVEL`: `debug`, `info`, `warning`,
  `error`; default `info`) goes before the command: `iotedge --log-level debug edge`.
"""

_RULES_TEXT = """\
## The rules file (`--rules-file`)

Without a rules file the edge uses the built-in rules below. A rules file is JSON with the
same shape; give the whole `thresholds` list (it replaces the defaults), and any of the
other sections (omitted ones keep their defaults). Unknown keys are refused at start-up.

- **Thresholds:** one rule per metric and direction; give exactly one of `above` or
  `below`. The rule is named `<metric>_high` or `<metric>_low`.
- **Hysteresis:** an event opened by a threshold closes only when the value is back inside
  by `hysteresis` times the metric's normal range (2 % by default: 0.2 °C for temperature),
  so a value hovering at the limit is one event, not one per reading.
- **zscore:** on each object's primary metric, opens when a reading is more than `z`
  standard deviations from the object's last `window` readings (once it has `min_count`),
  closes below `clear_z`.
- **stuck:** opens when the primary metric repeats the same value `readings` times in a row.
- **offline:** opens when an object's primary metric has had no new reading for
  `intervals` poll intervals (plus one), closes with the next reading.
- `severity` is `info`, `warning` or `critical`; it travels with the event to the API,
  the metrics and the notifications.
"""

_KEYS_TEXT = """\
## The keys file (`--keys-file`, default `<data-dir>/keys.json`)

API keys are bearer secrets, so the edge stores **only their SHA-256 hashes**. The file is
written by the `iotedge keys` commands (owner-only permissions) and re-read by a running
edge when it changes (checked at most once a second; `kill -HUP` re-reads it at once): no
restart is needed to add, revoke or delete a key. Its shape:

```json
{example}
```

{fields}

Keys can also come from the environment, `IOTEDGE_API_KEYS=client_1=KEY1,client_2=KEY2,*=CLOUDKEY`
(keys of 16 characters or more; the client `*` is the read-only cross-client scope used by
Grafana). They are hashed in memory at start-up and changing them needs a restart. The
full key lifecycle (list, revoke, rotate, expire) is described in [security.md](security.md).
"""

# Example values of the keys file's fields, for the sample record.
_KEY_EXAMPLE = {
    "id": "3f9c1a2b",
    "client": "client_1",
    "hash": "<sha256 of the key, hex>",
    "created_at": 1795958170.2,
}

# Meanings of the keys file's fields (the record type has no per-field docs).
_KEY_FIELDS = {
    "id": "Public id of the key: shown in logs and listings instead of the key.",
    "client": "The client the key reads, or `*` for every client (read-only).",
    "hash": "SHA-256 of the key (hex); the key itself is never stored.",
    "created_at": "Creation time, epoch seconds.",
    "expires_at": "Expiry time, epoch seconds; null = never.",
    "revoked_at": "Revocation time, epoch seconds; null = valid.",
}

_DATA_DIR_FILES = [
    (
        "`iotedge.sqlite3` (+ `-wal`, `-shm`)",
        "The store: objects, readings, anomaly events, the notification outbox (SQLite in WAL "
        "mode). Back it up as described in [operations.md](operations.md#backup-and-restore).",
    ),
    ("`keys.json`", "The keys file (hashes only), unless `--keys-file` points elsewhere."),
    (
        "`keys.json.used`",
        "When each key was last used (key id and time), written by the edge at most once a minute.",
    ),
    (
        "`demo-keys.env`",
        "Written by `iotedge run` only: the demo keys as `CLIENT_1_KEY=...` lines, replaced at every start.",
    ),
]

# Sections of the edge's settings, by field name; fields not listed go under "Other".
_EDGE_GROUPS: dict[str, tuple[str, ...]] = {
    "Server": ("host", "port", "metrics_port", "edge_id", "role"),
    "Device API and collector": (
        "upstream",
        "poll_interval",
        "poll_concurrency",
        "upstream_timeout",
        "clients",
    ),
    "Store and data": (
        "data_dir",
        "store",
        "store_buffer_readings",
        "retention",
        "stale_after",
        "rules_file",
    ),
    "Keys": ("keys_file", "api_keys"),
    "HTTPS (see [security.md](security.md))": ("certfile", "keyfile", "client_ca", "upstream_ca"),
    "Limits (see [security.md](security.md))": (
        "rate_limit",
        "rate_burst",
        "auth_failures",
        "max_body",
        "max_url",
        "max_header",
        "header_timeout",
        "body_timeout",
        "max_connections",
    ),
    "Metrics (see [metrics.md](metrics.md))": (
        "metrics_host",
        "metrics_certfile",
        "metrics_keyfile",
        "metrics_token",
        "metrics_token_file",
        "metrics_user",
        "metrics_per_object",
    ),
    "MQTT (see [mqtt.md](mqtt.md))": (
        "mqtt_broker",
        "mqtt_topic_prefix",
        "mqtt_client_id",
        "mqtt_ca",
        "mqtt_certfile",
        "mqtt_keyfile",
        "mqtt_username",
        "mqtt_password",
        "mqtt_session_expiry",
        "mqtt_max_payload",
        "mqtt_object_rate",
        "mqtt_object_burst",
        "mqtt_statistics_interval",
    ),
    "Notifications (see [notifications.md](notifications.md))": (
        "webhook_url",
        "webhook_secret",
        "webhook_timeout",
        "smtp_host",
        "smtp_port",
        "smtp_security",
        "smtp_user",
        "smtp_password",
        "smtp_timeout",
        "smtp_ca_file",
        "mail_from",
        "mail_to",
        "notify_routes",
        "notify_cooldown",
        "notify_flap_window",
        "notify_flap_max",
        "notify_max_age",
        "notify_poll_interval",
        "notify_backoff_base",
        "notify_backoff_max",
        "notify_batch_size",
    ),
}


# What the option tables of the other commands cannot say.
_COMMAND_NOTES = {
    "iotedge run": (
        "`iotedge run` builds both roles' settings like `iotedge sim` and `iotedge edge` do, so "
        "their other `IOTEDGE_SIM_*` and `IOTEDGE_*` variables apply too (e.g. `IOTEDGE_SIM_SEED`, "
        "`IOTEDGE_RULES_FILE`), except the ones it sets itself: the ports and data directory above, "
        "the upstream URL and `IOTEDGE_API_KEYS` (fresh demo keys). The notification variables "
        "apply as well, so `IOTEDGE_WEBHOOK_URL=... iotedge run` notifies."
    ),
}


def settings_commands() -> dict[str, tuple[type[BaseModel], str, click.Command]]:
    """Each settings-driven command: (settings model, environment prefix, click command)."""
    from iotedge.cli import main

    return {
        "sim": (SimSettings, SIM_ENV_PREFIX, main.commands["sim"]),
        "edge": (EdgeSettings, EDGE_ENV_PREFIX, main.commands["edge"]),
    }


def click_options(command: click.Command) -> dict[str, dict[str, Any]]:
    """The options of ``command`` by parameter name, as click describes them."""
    return {
        param.name: param.to_info_dict()
        for param in command.params
        if isinstance(param, click.Option) and param.name and param.name != "help"
    }


def _duration_fields(model: type[BaseModel]) -> set[str]:
    """Settings (flat names) that a validator parses as durations (``5s``, ``15m``...)."""
    names: set[str] = set()
    for flat, (path, _) in setting_fields(model).items():
        owner: type[BaseModel] = model
        if len(path) > 1:
            nested = model.model_fields[path[0]].annotation
            if isinstance(nested, type) and issubclass(nested, BaseModel):
                owner = nested
        for name, decorator in owner.__pydantic_decorators__.field_validators.items():
            if "duration" in name and path[-1] in decorator.info.fields:
                names.add(flat)
    return names


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _default(value: Any, is_duration: bool) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return code(str(value).lower())
    if is_duration and isinstance(value, int | float):
        return code(_duration(float(value)))
    if isinstance(value, tuple | list):
        return code(",".join(str(v) for v in value)) if value else "(empty)"
    if value == "":
        return "(empty)"
    return code(str(value))


def _bounds(info: FieldInfo) -> str:
    words = []
    for item in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(item, attr, None)
            if bound is not None:
                words.append(
                    f"{sign} {bound:,}".replace(",", " ") if isinstance(bound, int) else f"{sign} {bound}"
                )
    return ", ".join(words)


def _literal_values(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    if origin in (tuple, types.UnionType, typing.Union):
        values: list[Any] = []
        for arg in typing.get_args(annotation):
            values += _literal_values(arg)
        return values
    return []


def _kind(name: str, info: FieldInfo, durations: set[str]) -> str:
    annotation = info.annotation
    if name in durations:
        kind = "duration"
    elif _literal_values(annotation):
        prefix = "comma list of" if typing.get_origin(annotation) is tuple else "one of"
        kind = f"{prefix} " + ", ".join(str(v) for v in _literal_values(annotation))
    elif typing.get_origin(annotation) is tuple and typing.get_args(annotation)[0] is str:
        kind = "comma list"
    elif annotation is bool:
        kind = "true/false"
    elif annotation is int:
        kind = "integer"
    elif annotation is float:
        kind = "number"
    elif Path in typing.get_args(annotation) or annotation is Path:
        kind = "path"
    else:
        kind = "text"
    bounds = _bounds(info)
    return f"{kind} ({bounds})" if bounds else kind


def _flag(option: dict[str, Any] | None) -> str:
    if option is None:
        return "environment only"
    flags = [*option["opts"], *option["secondary_opts"]]
    return " / ".join(code(flag) for flag in flags)


def _settings_rows(
    model: type[BaseModel], prefix: str, command: click.Command, names: list[str]
) -> list[list[str]]:
    options = click_options(command)
    durations = _duration_fields(model)
    rows = []
    fields = setting_fields(model)
    for name in names:
        info = fields[name][1]
        rows.append(
            [
                _flag(options.get(name)),
                code(env_name(prefix, name)),
                _default(info.default, name in durations),
                _kind(name, info, durations),
                info.description or "",
            ]
        )
    return rows


_HEADER = ["Flag", "Environment variable", "Default", "Type", "Meaning"]


def _command_section(name: str) -> list[str]:
    model, prefix, command = settings_commands()[name]
    title = {"sim": "the device API simulator", "edge": "the edge server"}[name]
    help_text = (command.help or "").split("\n")[0]
    lines = [f"## `iotedge {name}`: {title}", "", help_text, ""]
    fields = list(setting_fields(model))
    if name == "edge":
        placed: set[str] = set()
        for group, members in _EDGE_GROUPS.items():
            names = [field for field in members if field in fields]
            placed.update(names)
            if names:
                lines += [
                    f"### {group}",
                    "",
                    table(_HEADER, _settings_rows(model, prefix, command, names)),
                    "",
                ]
        rest = [field for field in fields if field not in placed]
        if rest:
            lines += ["### Other", "", table(_HEADER, _settings_rows(model, prefix, command, rest)), ""]
    else:
        lines += [table(_HEADER, _settings_rows(model, prefix, command, fields)), ""]
    extra = sorted(set(click_options(command)) - set(fields))
    if extra:
        lines += ["Flags of this command that are not settings: " + ", ".join(code(e) for e in extra), ""]
    return lines


def _walk(group: click.Group, path: str) -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        full = f"{path} {name}"
        if isinstance(command, click.Group):
            yield from _walk(command, full)
        else:
            yield full, command


def _other_commands() -> list[str]:
    from iotedge.cli import main

    lines = ["## Other commands", ""]
    skip = {f"iotedge {name}" for name in settings_commands()}
    for full, command in _walk(main, "iotedge"):
        if full in skip:
            continue
        lines += [f"### `{full}`", "", (command.help or "").split("\n")[0], ""]
        options = click_options(command)
        if full == "iotedge notify test" and set(options) <= set(setting_fields(EdgeSettings)):
            lines += ["Takes the same flags and environment variables as `iotedge edge`.", ""]
            continue
        rows = []
        for param in command.params:
            if not isinstance(param, click.Option) or param.name not in options:
                continue
            option = options[param.name]
            default = option.get("default")
            if callable(param.default):  # computed when the command runs; click shows a text instead
                default = param.show_default if isinstance(param.show_default, str) else "(computed)"
            rows.append(
                [
                    _flag(option),
                    code(option["envvar"]) if option.get("envvar") else "",
                    "(required)" if option.get("required") else _default(default, False),
                    option.get("help") or "",
                ]
            )
        if rows:
            lines += [table(["Flag", "Environment variable", "Default", "Meaning"], rows), ""]
        if full in _COMMAND_NOTES:
            lines += [_COMMAND_NOTES[full], ""]
    return lines


def _rules_section() -> list[str]:
    lines = [_RULES_TEXT.rstrip("\n"), "", "The built-in rules, as a rules file:", "", "```json"]
    lines += [compact_json(DEFAULT_RULES.model_dump(mode="json", exclude_none=True)), "```", ""]
    schema = RuleSet.model_json_schema()
    definitions = schema.get("$defs", {})
    rows = []
    for section, prop in schema.get("properties", {}).items():
        ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
        if ref is None:
            rows.append([code(section), _default(prop.get("default"), False), _rule_bounds(prop)])
            continue
        prefix = f"{section}[]." if prop.get("type") == "array" else f"{section}."
        for field, inner in definitions[ref.rsplit("/", 1)[-1]].get("properties", {}).items():
            rows.append([code(prefix + field), _default(inner.get("default"), False), _rule_bounds(inner)])
    lines += [table(["Field", "Default", "Allowed"], rows), ""]
    return lines


def _rule_bounds(prop: dict[str, Any]) -> str:
    options = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    target = options[0] if options else prop
    if "enum" in target:
        return "one of " + ", ".join(str(v) for v in target["enum"])
    words = [str(target.get("type", ""))]
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in target:
            words.append(f"{sign} {target[key]}")
    return " ".join(words) + (", optional" if len(prop.get("anyOf", [])) > 1 else "")


def _keys_section() -> list[str]:
    fields = dataclasses.fields(KeyRecord)
    record = {
        f.name: _KEY_EXAMPLE.get(f.name, None if f.default is dataclasses.MISSING else f.default)
        for f in fields
    }
    example = json.dumps({"keys": [record]}, indent=2)
    rows = [[code(f.name), _KEY_FIELDS.get(f.name, "See [security.md](security.md).")] for f in fields]
    text = _KEYS_TEXT.replace("{example}", example).replace("{fields}", table(["Field", "Meaning"], rows))
    return [text.rstrip("\n"), ""]


def render_configuration() -> str:
    """The whole of docs/configuration.md."""
    lines = [GENERATED_NOTE, "", _INTRO.rstrip("\n"), ""]
    lines += _command_section("sim")
    lines += _command_section("edge")
    lines += _other_commands()
    lines += _rules_section()
    lines += _keys_section()
    lines += [
        "## The data directory (`--data-dir`, default `data`)",
        "",
        table(["File", "What it is"], _DATA_DIR_FILES),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
