"""``iotedge run``: the simulator and the edge in one process, with demo keys printed."""

import asyncio
import logging
import secrets
import socket
from pathlib import Path
from typing import Any

import click

from iotedge.config import load_edge_settings, load_sim_settings

__all__ = ["ensure_port_free", "run_demo"]

_log = logging.getLogger(__name__)


def ensure_port_free(host: str, port: int, flag: str) -> None:
    """Fail early, with the flag to change, when a port is taken."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError:
        return  # a name that does not resolve: the server's own bind reports it
    with socket.socket(family, kind, proto) as sock:
        # As the server will: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise click.ClickException(
                f"port {port} on {host} is not free ({exc.strerror}); is another iotedge running? "
                f"Stop it or pick another port with {flag}."
            ) from None


def _demo_keys(clients: list[str]) -> dict[str, str]:
    """A fresh random key per client, plus one cross-client read-only key ('*')."""
    return {client: "demo_" + secrets.token_urlsafe(24) for client in [*clients, "*"]}


def _write_keys_env(path: Path, keys: dict[str, str]) -> None:
    """Save the demo keys as shell variables (CLIENT_1_KEY=..., CLOUD_KEY=...) for copy-paste."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{'CLOUD' if client == '*' else client.upper()}_KEY={key}" for client, key in keys.items()]
    path.write_text("# iotedge run demo keys, replaced at every start\n" + "\n".join(lines) + "\n")
    path.chmod(0o600)


def _banner(keys: dict[str, str], sim_url: str, edge_url: str, metrics_url: str | None) -> str:
    first = next(iter(keys))
    lines = [
        "",
        "iotedge is running (Ctrl-C stops it)",
        f"  device API simulator  {sim_url}      docs: {sim_url}/docs",
        f"  edge API              {edge_url}      docs: {edge_url}/docs",
        f"  web console           {edge_url}/ui/   (sign in with a key below)",
    ]
    if metrics_url:
        lines.append(f"  edge metrics          {metrics_url}")
    lines += ["", "Demo API keys (new at every start; the edge keeps only their hashes):"]
    lines += [f"  {client:<10} {key}" for client, key in keys.items() if client != "*"]
    lines += [f"  {'cloud (*)':<10} {keys['*']}   (read-only, every client: for Grafana)", ""]
    lines += [
        "Try:",
        f"  curl {sim_url}/iot_objects",
        f"  curl -H 'x-api-key: {keys[first]}' '{edge_url}/processed_data?object_id=device_1'",
        f"  curl -H 'x-api-key: {keys[first]}' '{edge_url}/client_statistics?client_id={first}'",
        f"  curl -H 'x-api-key: {keys[first]}' '{edge_url}/anomalies'",
        "",
    ]
    return "\n".join(lines)


async def run_demo(
    *,
    host: str = "127.0.0.1",
    sim_port: int,
    port: int,
    metrics_port: int,
    data_dir: str,
    poll_interval: str,
    store: str = "",
) -> None:
    """Serve the simulator (on 127.0.0.1) and the edge's API and metrics (on ``host``) until interrupted."""
    from iotedge.edge.app import create_app as create_edge
    from iotedge.edge.store.choose import open_async_store
    from iotedge.serving import edge_limits, uvicorn_server
    from iotedge.sim.app import create_app as create_sim

    ensure_port_free("127.0.0.1", sim_port, "--sim-port")
    for bound, flag in ((port, "--port"), (metrics_port, "--metrics-port")):
        ensure_port_free(host, bound, flag)
    sim_settings = load_sim_settings(port=sim_port)
    sim_app = create_sim(sim_settings)
    clients = sorted(sim_app.state.fleet.by_client, key=lambda c: int(c.rsplit("_", 1)[-1]))
    keys = _demo_keys(clients)
    sim_url = f"http://127.0.0.1:{sim_port}"
    edge_settings = load_edge_settings(
        host=host,
        metrics_host=host,
        port=port,
        metrics_port=metrics_port,
        upstream=sim_url,
        data_dir=Path(data_dir),
        poll_interval=poll_interval,
        store=store,
        api_keys=",".join(f"{client}={key}" for client, key in keys.items()),
    )
    # Opened (and checked) before serving: a bad store is one line from the CLI, not a traceback.
    edge_app = create_edge(edge_settings, store=await open_async_store(edge_settings))
    keys_env = Path(data_dir) / "demo-keys.env"
    _write_keys_env(keys_env, keys)
    servers: list[Any] = [
        uvicorn_server(sim_app, sim_settings.host, sim_port),
        uvicorn_server(
            edge_app,
            edge_settings.host,
            port,
            limits=edge_limits(edge_settings),
            on_event=edge_app.state.metrics.record_connection_event,
        ),
    ]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            break
        await asyncio.sleep(0.05)
    else:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        metrics_url = f"http://{shown}:{metrics_port}/metrics" if metrics_port else None
        click.echo(_banner(keys, sim_url, f"http://{shown}:{port}", metrics_url))
        click.echo(f"The keys are also in {keys_env} (source it to get $CLIENT_1_KEY ... $CLOUD_KEY).\n")
    try:
        await asyncio.gather(*tasks)
    finally:
        for server in servers:
            server.should_exit = True
