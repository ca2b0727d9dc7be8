"""Notification settings: route parsing, routing decisions and refusals at construction."""

from pathlib import Path
from typing import Any

import pytest

from iotedge.cli import edge
from iotedge.config import EdgeSettings, load_edge_settings, setting_fields
from iotedge.config_notify import DERIVED
from iotedge.edge.notify import NotifySettings, Route, parse_routes
from iotedge.errors import ConfigError

HOOK_KEY, MAIL_PASS = "very-secret-value", "hunter2-value"
BOTH: dict[str, Any] = {
    "webhook_url": "http://127.0.0.1:9/hook",
    "webhook_secret": "s",
    "smtp_host": "127.0.0.1",
    "mail_to": ("ops@example.org",),
}


def test_parse_routes() -> None:
    """The compact route syntax gives ordered routes; '*' and empty lists mean all/none."""
    routes = parse_routes("client_1:critical=webhook+email; client_3:*= ;*:*=webhook")
    assert routes == (
        Route(client="client_1", severities=("critical",), channels=("webhook", "email")),
        Route(client="client_3", severities=("warning", "critical"), channels=()),
        Route(client="*", severities=("warning", "critical"), channels=("webhook",)),
    )


def test_first_matching_route_decides() -> None:
    """Routes are tried in order; unmatched events go nowhere; no routes means all channels."""
    settings = NotifySettings(**BOTH, routes=parse_routes("client_1:critical=email;*:*=webhook;"))
    assert settings.channels_for("client_1", "critical") == ("email",)
    assert settings.channels_for("client_1", "warning") == ("webhook",)
    assert NotifySettings(**BOTH).channels_for("anyone", "warning") == ("webhook", "email")
    only = NotifySettings(**BOTH, routes=parse_routes("client_2:warning=email"))
    assert only.channels_for("client_1", "warning") == ()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        pytest.param({"webhook_url": "http://x/h"}, "webhook_secret", id="no-secret"),
        pytest.param({"webhook_url": "ftp://x", "webhook_secret": "s"}, "http", id="scheme"),
        pytest.param({"smtp_host": "mail"}, "mail_to", id="no-recipients"),
        pytest.param(
            {"smtp_host": "mail", "mail_to": ("a@b",), "smtp_security": "ssl"},
            "smtp_security",
            id="security",
        ),
        pytest.param(
            {
                "smtp_host": "mail.example.org",
                "mail_to": ("a@b",),
                "smtp_security": "plain",
                "smtp_user": "u",
                "smtp_password": "p",
            },
            "clear text",
            id="plain-password-remote",
        ),
        pytest.param({"routes": parse_routes("*:*=email")}, "not configured", id="route-channel"),
        pytest.param({"cooldown_s": -1}, "cooldown_s", id="negative"),
        pytest.param({"smtp_ca_file": "/nonexistent/ca.pem"}, "smtp_ca_file", id="ca-file"),
        pytest.param({"flap_max": 0}, "flap_max", id="flap-max"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, object], needle: str) -> None:
    """Invalid combinations raise ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=needle):
        NotifySettings(**kwargs)


def test_secrets_stay_out_of_repr() -> None:
    """The webhook secret and SMTP password never show in a repr (logs, tracebacks)."""
    settings = NotifySettings(
        webhook_url="http://127.0.0.1:9/h",
        webhook_secret=HOOK_KEY,
        smtp_host="127.0.0.1",
        smtp_security="plain",
        smtp_user="u",
        smtp_password=MAIL_PASS,
        mail_to=("a@b",),
    )
    assert HOOK_KEY not in repr(settings) and MAIL_PASS not in repr(settings)


def test_every_notify_setting_is_a_variable_and_a_flag(tmp_path: Path) -> None:
    """Each notification field (the derived ones aside) is an IOTEDGE_* variable, and a flag unless secret."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    env = {
        "IOTEDGE_SMTP_CA_FILE": str(ca),
        "IOTEDGE_WEBHOOK_TIMEOUT": "4s",
        "IOTEDGE_NOTIFY_BACKOFF_BASE": "1s",
        "IOTEDGE_NOTIFY_BACKOFF_MAX": "1m",
        "IOTEDGE_NOTIFY_BATCH_SIZE": "7",
    }
    notify = load_edge_settings(env, notify_poll_interval="3s", edge_id="e9").notify
    assert (notify.smtp_ca_file, notify.webhook_timeout_s) == (str(ca), 4.0)
    assert (notify.backoff_base_s, notify.backoff_max_s, notify.batch_size) == (1.0, 60.0, 7)
    assert (notify.poll_interval_s, notify.edge_id) == (3.0, "e9")
    flags = {param.name for param in edge.params}
    settings = setting_fields(EdgeSettings)
    for name, info in NotifySettings.model_fields.items():
        if name in DERIVED:
            continue
        flat = info.alias or name
        assert settings[flat][0] == ("notify", name), flat
        if flat not in ("webhook_secret", "smtp_password"):  # secrets: environment only, out of `ps`
            assert flat in flags, f"iotedge edge has no flag for {flat}"


def test_a_bad_notify_variable_is_named() -> None:
    """A bad value names the environment variable it came from, as for any other setting."""
    with pytest.raises(ConfigError, match="IOTEDGE_NOTIFY_BATCH_SIZE"):
        load_edge_settings({"IOTEDGE_NOTIFY_BATCH_SIZE": "0"})
