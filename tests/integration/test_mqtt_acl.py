"""The shipped Mosquitto ACL (deploy/mosquitto/acl) confines a device to its own topic, on a real broker."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require, wait_for
from tests.mqttutil import own_broker, publish_many, subscriber

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_a_device_may_publish_only_its_own_telemetry(tmp_path: Path) -> None:
    """Device client_1/device_7 reaches its own topic; other objects', clients' and the edge's are refused."""
    require(shutil.which("mosquitto_passwd") is not None, "mosquitto_passwd (apt-get install mosquitto)")
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    for user, password in (("edge", "edge-pw"), ("client_1", "device-pw")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, timeout=10)
    extra = f"allow_anonymous false\npassword_file {passwd}\nacl_file {REPO / 'deploy/mosquitto/acl'}\n"
    with own_broker(tmp_path / "broker", extra=extra) as broker:
        address = ("127.0.0.1", broker.port)
        with subscriber(*address, "iotedge/#", username="edge", password="edge-pw") as edge:
            refused = [
                ("iotedge/client_1/device_8/telemetry", b"another object"),
                ("iotedge/client_2/device_7/telemetry", b"another client"),
                ("iotedge/client_1/anomalies", b"the edge's topic"),
            ]
            own = ("iotedge/client_1/device_7/telemetry", b"mine")
            # In order: had a refused message passed, it would arrive before the allowed one.
            publish_many(
                *address, [*refused, own], client_id="device_7", username="client_1", password="device-pw"
            )
            wait_for(lambda: len(edge.received()) >= 1, 10, "the device's own message")
            assert [(m.topic, m.payload) for m in edge.received()] == [own]
