"""The device API simulator: the course's endpoints over a deterministic fleet."""

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from iotedge import __version__
from iotedge.apidocs import install_api_docs
from iotedge.config import SimSettings
from iotedge.sim.faults import FaultMiddleware, Faults
from iotedge.sim.fleet import AnomalyEvent, Fleet
from iotedge.sim.models import DataOut, ErrorOut, FaultsIn, HistoryOut, InjectIn, ObjectOut
from iotedge.sim.push import build_pusher, pushing
from iotedge.specs import DEVICE_TYPES
from iotedge.web import JSONBytes, error_response, install_json_errors

__all__ = ["create_app"]

_MAX_ANOMALY_SCAN = 2_000_000  # object-slots one /_sim/anomalies call may examine


def _iso(ts: float, with_offset: bool) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.isoformat() if with_offset else moment.replace(tzinfo=None).isoformat()


def _epoch(value: str | None, default: float) -> float:
    """Epoch seconds from an epoch number or an ISO 8601 string (naive means UTC)."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        pass
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


_NOT_FOUND_DEVICE = {"error": "Device not found"}
_NOT_FOUND_CLIENT = {"error": "No devices found for this client"}

# The two paths of the current reading; what an edge polls thousands of times a second.
_CURRENT_PREFIXES = ("/iot_data/", "/iot_objects/")
_JSON_HEADER = (b"content-type", b"application/json")


class _CurrentReadingLane:
    """Answer ``GET`` of the current-reading paths straight from ASGI.

    Profiling (bench/) showed FastAPI's routing, dependency solving and response classes
    costing three times the reading itself, which made the simulator the bottleneck of
    edge benchmarks. This lane sits inside the fault middleware (faults still apply) and
    answers with the same bytes as the documented routes, which call the same ``body``
    function; anything else (other methods, ``/iot_objects/by_client/...``) goes on to
    FastAPI.
    """

    def __init__(self, app: ASGIApp, *, body: Callable[[str], tuple[int, bytes]]) -> None:
        self.app = app
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            for prefix in _CURRENT_PREFIXES:
                if path.startswith(prefix):
                    object_id = path[len(prefix) :]
                    if object_id and "/" not in object_id:
                        status, body = self._body(object_id)
                        await send(
                            {
                                "type": "http.response.start",
                                "status": status,
                                "headers": [
                                    (b"content-length", str(len(body)).encode()),
                                    _JSON_HEADER,
                                ],
                            }
                        )
                        await send({"type": "http.response.body", "body": body})
                        return
        await self.app(scope, receive, send)


def _event_json(event: AnomalyEvent) -> dict[str, Any]:
    return {
        "object_id": event.object_id,
        "client": event.client,
        "kind": event.kind,
        "metric": event.metric,
        "start": event.start,
        "end": event.end,
        "started_at": _iso(event.start, True),
        "ended_at": _iso(event.end, True),
    }


def create_app(
    settings: SimSettings,
    *,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> FastAPI:
    """Build a simulator app for ``settings``; ``clock`` and ``rng`` are seams for tests."""
    fleet = Fleet(
        seed=settings.seed,
        clients=settings.clients,
        objects_per_client=settings.objects_per_client,
        interval_s=max(1, round(settings.interval)),
        anomaly_rate=settings.anomaly_rate,
        anomaly_slot_s=max(1, round(settings.anomaly_slot)),
    )
    faults = Faults(
        latency_ms=settings.latency_ms,
        jitter_ms=settings.jitter_ms,
        error_rate=settings.error_rate,
        garbage_rate=settings.garbage_rate,
        garbage_kinds=list(settings.garbage_kinds),
        hang_rate=settings.hang_rate,
        hang_seconds=settings.hang_seconds,
    )
    offset = settings.timestamp_offset
    pusher = build_pusher(settings, fleet, clock=clock)
    # A split fleet: the objects that push over MQTT are not listed for polling.
    pushed = {obj.id for obj in pusher.objects} if pusher is not None else set()
    catalogue = [obj.as_json() for obj in fleet.objects if obj.id not in pushed]
    catalogue_by_client = {
        client: [obj.as_json() for obj in objects if obj.id not in pushed]
        for client, objects in fleet.by_client.items()
    }

    app = FastAPI(
        title="iotedge device API simulator",
        version=__version__,
        description="The course's device API, deterministic, with injected anomalies and faults.",
        docs_url=None,  # served from the package by install_api_docs: no CDN, works offline
        redoc_url=None,
        lifespan=pushing(pusher),
    )
    install_api_docs(app)
    install_json_errors(app)
    not_found_device = bytes(JSONBytes(_NOT_FOUND_DEVICE).body)
    # A reading is a pure function of (object, bucket): keep each object's last rendered
    # body and reuse it until its bucket changes (at most one entry per object).
    rendered: dict[int, tuple[int, bytes]] = {}

    def current_body(object_id: str) -> tuple[int, bytes]:
        obj = fleet.by_id.get(object_id)
        if obj is None:
            return 404, not_found_device
        bucket = fleet.bucket_start(clock())
        cached = rendered.get(obj.index)
        if cached is not None and cached[0] == bucket:
            return 200, cached[1]
        reading = fleet.reading(obj, bucket)
        payload = {
            "id": obj.id,
            "client": obj.client,
            "type": obj.type,
            "metrics": reading.metrics,
            "timestamp": _iso(reading.timestamp, offset),
        }
        body = bytes(JSONBytes(payload).body)
        rendered[obj.index] = (bucket, body)
        return 200, body

    # Added first, so it runs inside the fault middleware.
    app.add_middleware(_CurrentReadingLane, body=current_body)
    app.add_middleware(FaultMiddleware, faults=faults, rng=rng or random.Random(settings.seed))
    app.state.fleet = fleet
    app.state.pusher = pusher
    app.state.faults = faults

    not_found: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}

    @app.get("/", tags=["course"])
    async def root() -> dict[str, str]:
        """Welcome message and where to start."""
        return {
            "message": "iotedge device API simulator: "
            f"{len(fleet.objects)} objects, {len(fleet.by_client)} clients",
            "hint": "start with /iot_objects",
        }

    @app.get("/healthz", tags=["simulator"])
    async def healthz() -> dict[str, str]:
        """Liveness probe (never faulted)."""
        return {"status": "ok"}

    @app.get("/iot_objects", tags=["course"], responses={200: {"model": list[ObjectOut]}})
    async def list_objects() -> JSONBytes:
        """Every object with its client and type."""
        return JSONBytes(catalogue)

    @app.get(
        "/iot_objects/by_client/{client}",
        tags=["course"],
        responses={200: {"model": list[ObjectOut]}, **not_found},
    )
    async def objects_by_client(client: str) -> JSONBytes:
        """The objects of one client."""
        objects = catalogue_by_client.get(client)
        if objects is None:
            return JSONBytes(_NOT_FOUND_CLIENT, status_code=404)
        return JSONBytes(objects)

    @app.get(
        "/iot_objects/{object_id}/history",
        tags=["course"],
        responses={200: {"model": HistoryOut}, **not_found},
    )
    async def history(
        object_id: str,
        limit: Annotated[int, Query(ge=1, le=1000, description="Number of points.")] = 10,
    ) -> JSONBytes:
        """The primary metric at one-minute steps, newest first."""
        obj = fleet.by_id.get(object_id)
        if obj is None:
            return JSONBytes(_NOT_FOUND_DEVICE, status_code=404)
        points = [
            {"timestamp": _iso(ts, offset), "value": value}
            for ts, value in fleet.history(obj, clock(), limit)
        ]
        return JSONBytes({**obj.as_json(), "history": points})

    async def current(object_id: str) -> Response:
        # GET requests are answered by _CurrentReadingLane with the same body function.
        status, body = current_body(object_id)
        return Response(body, status_code=status, media_type="application/json")

    app.get(
        "/iot_data/{object_id}",
        tags=["course"],
        summary="Current reading (the brief's path)",
        responses={200: {"model": DataOut}, **not_found},
    )(current)
    app.get(
        "/iot_objects/{object_id}",
        tags=["course"],
        summary="Current reading (the course simulator's path)",
        responses={200: {"model": DataOut}, **not_found},
    )(current)

    @app.get("/_sim/info", tags=["simulator"])
    async def info() -> dict[str, Any]:
        """How this simulator is set up."""
        return {
            "seed": fleet.seed,
            "objects": len(fleet.objects),
            "clients": len(fleet.by_client),
            "interval_s": fleet.interval_s,
            "anomaly_rate": fleet.anomaly_rate,
            "anomaly_slot_s": fleet.anomaly_slot_s,
            "now": clock(),
        }

    @app.get("/_sim/anomalies", tags=["simulator"])
    async def anomalies(
        request: Request,
        since: Annotated[str | None, Query(description="Epoch seconds or ISO 8601; default 1 h ago.")] = None,
        until: Annotated[str | None, Query(description="Epoch seconds or ISO 8601; default now.")] = None,
        object_id: str | None = None,
        client: str | None = None,
    ) -> JSONBytes:
        """Ground truth: the injected anomalies overlapping [since, until)."""
        now = clock()
        try:
            start = _epoch(since, now - 3600)
            end = _epoch(until, now)
        except ValueError as exc:
            return error_response(
                422,
                "Invalid request parameters",
                [{"parameter": "since/until", "in": "query", "message": str(exc)}],
            )
        objects = fleet.objects
        if object_id is not None:
            objects = [obj for obj in objects if obj.id == object_id]
        if client is not None:
            objects = [obj for obj in objects if obj.client == client]
        slots = max(0.0, end - start) / fleet.anomaly_slot_s + 1
        if end < start or slots * len(objects) > _MAX_ANOMALY_SCAN:
            return error_response(
                422,
                "Invalid request parameters",
                [
                    {
                        "parameter": "since/until",
                        "in": "query",
                        "message": "window must be ordered and small enough for the fleet",
                    }
                ],
            )
        events = [_event_json(event) for event in fleet.anomalies(start, end, objects)]
        return JSONBytes({"since": start, "until": end, "anomalies": events})

    @app.post("/_sim/anomalies/inject", tags=["simulator"], status_code=201, responses=not_found)
    async def inject(order: InjectIn) -> JSONBytes:
        """Start an anomaly now on one object (for live demos of alerts and notifications)."""
        obj = fleet.by_id.get(order.object_id)
        if obj is None:
            return JSONBytes(_NOT_FOUND_DEVICE, status_code=404)
        metric = order.metric or ("battery_level" if order.kind == "battery_low" else obj.primary)
        allowed = DEVICE_TYPES[obj.type].metrics
        refusal = None
        if metric not in allowed:
            refusal = f"{obj.id} ({obj.type}) has no {metric}: it measures {', '.join(allowed)}"
        elif order.kind == "battery_low" and metric != "battery_level":
            refusal = "battery_low applies to battery_level only"
        if refusal:
            return error_response(
                422, "Invalid request parameters", [{"parameter": "metric", "in": "body", "message": refusal}]
            )
        event = fleet.inject(obj, kind=order.kind, metric=metric, start=clock(), duration_s=order.duration_s)
        rendered.pop(obj.index, None)  # the cached current body predates the anomaly
        return JSONBytes(_event_json(event), status_code=201)

    @app.get("/_sim/faults", tags=["simulator"])
    async def get_faults() -> dict[str, object]:
        """The faults currently injected."""
        return faults.as_json()

    @app.put("/_sim/faults", tags=["simulator"])
    async def put_faults(change: FaultsIn) -> dict[str, object]:
        """Change the injected faults at run time (omitted fields are kept)."""
        for key, value in change.model_dump(exclude_none=True).items():
            setattr(faults, key, value)
        return faults.as_json()

    return app
