"""The guard's pure parts: TLS failure reasons and the once-per-peer-per-minute log."""

import logging
import ssl

import pytest

from iotedge.guard import TLS_REASONS, _PeerLog, tls_reason


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    error.reason = reason
    return error


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        pytest.param(_ssl_error("HTTP_REQUEST"), "plain_http", id="plain-http"),
        pytest.param(_ssl_error("PEER_DID_NOT_RETURN_A_CERTIFICATE"), "no_client_certificate", id="no-cert"),
        pytest.param(_ssl_error("CERTIFICATE_VERIFY_FAILED"), "bad_client_certificate", id="bad-cert"),
        pytest.param(_ssl_error("TLSV1_ALERT_UNKNOWN_CA"), "certificate_refused", id="client-distrusts"),
        pytest.param(_ssl_error("WRONG_VERSION_NUMBER"), "protocol", id="version"),
        pytest.param(_ssl_error("SOMETHING_NEW"), "other", id="unknown-ssl"),
        pytest.param(
            ConnectionAbortedError("SSL handshake is taking longer than 10 seconds"), "timeout", id="slow"
        ),
        pytest.param(ConnectionResetError("reset"), "closed", id="reset"),
        pytest.param(OSError("odd"), "other", id="other"),
    ],
)
def test_tls_failures_map_to_a_bounded_reason(exc: BaseException, reason: str) -> None:
    """Each handshake failure is counted under one of the known reasons."""
    assert tls_reason(exc) == reason
    assert reason in TLS_REASONS


def test_a_peer_is_logged_once_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    """Repeated failures of one peer log once a minute; another peer logs at once."""
    now = [1000.0]
    log = _PeerLog(clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="iotedge.guard")
    for _ in range(5):
        log.report("192.0.2.1", "plain_http", OSError("x"))
    log.report("192.0.2.2", "protocol", OSError("y"))
    now[0] += 61
    log.report("192.0.2.1", "plain_http", OSError("x"))
    peers = [record.args[0] for record in caplog.records if isinstance(record.args, tuple)]
    assert peers == ["192.0.2.1", "192.0.2.2", "192.0.2.1"]
