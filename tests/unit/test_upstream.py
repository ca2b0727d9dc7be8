"""The device API client's contract, against a scripted device API on loopback.

The device API is a boundary we do not own, so a tiny aiohttp server plays it here:
each test scripts its answers and reads back what the client asked.
"""

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from iotedge.edge.upstream import CircuitBreaker, DeviceApiClient
from iotedge.errors import UpstreamError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def _device_api(handler: Handler) -> AsyncIterator[tuple[str, list[str]]]:
    """Serve ``handler`` for every path on 127.0.0.1; yields (base URL, raw paths asked)."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request.raw_path)
        return await handler(request)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def _run(scenario: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(scenario())


def _outcomes() -> tuple[list[tuple[str, str]], Callable[[str, str, float], None]]:
    got: list[tuple[str, str]] = []
    return got, lambda endpoint, outcome, _seconds: got.append((endpoint, outcome))


def test_one_retry_after_a_5xx_then_success() -> None:
    """A 503 is retried once; the second answer is returned and both outcomes reported."""
    answers = iter([web.Response(status=503), web.json_response({"id": "d1"})])

    async def handler(_request: web.Request) -> web.StreamResponse:
        return next(answers)

    async def scenario() -> tuple[Any, list[tuple[str, str]]]:
        outcomes, hook = _outcomes()
        async with _device_api(handler) as (url, _):
            client = DeviceApiClient(url, on_outcome=hook)
            try:
                return await client.data("d1"), outcomes
            finally:
                await client.aclose()

    body, outcomes = _run(scenario)
    assert body == {"id": "d1"}
    assert outcomes == [("/iot_data/{id}", "status"), ("/iot_data/{id}", "ok")]


@pytest.mark.parametrize(
    ("status", "attempts"),
    [pytest.param(500, 2, id="5xx-retried-once"), pytest.param(400, 1, id="4xx-not-retried")],
)
def test_failures_are_upstream_errors_with_the_status(status: int, attempts: int) -> None:
    """A failing status ends as UpstreamError('status') after at most one retry."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=status)

    async def scenario() -> tuple[UpstreamError, list[str]]:
        async with _device_api(handler) as (url, seen):
            client = DeviceApiClient(url)
            try:
                with pytest.raises(UpstreamError) as caught:
                    await client.objects()
            finally:
                await client.aclose()
            return caught.value, seen

    error, seen = _run(scenario)
    assert (error.reason, error.status_code) == ("status", status)
    assert len(seen) == attempts


def test_bad_json_is_a_payload_error_and_nan_still_parses() -> None:
    """Garbage is UpstreamError('payload'); what the stdlib parser accepts (NaN) still parses."""

    async def handler(request: web.Request) -> web.StreamResponse:
        text = '{"v": NaN}' if request.path == "/iot_objects" else "<html>"
        return web.Response(text=text, content_type="application/json")

    async def scenario() -> tuple[Any, UpstreamError]:
        async with _device_api(handler) as (url, _):
            client = DeviceApiClient(url)
            try:
                listed = await client.objects()
                with pytest.raises(UpstreamError) as caught:
                    await client.data("d1")
            finally:
                await client.aclose()
            return listed, caught.value

    listed, error = _run(scenario)
    assert math.isnan(listed["v"])
    assert error.reason == "payload"


def test_hang_is_a_timeout_and_refusal_a_connect_error() -> None:
    """A device API that never answers times out; a closed port is a connect error."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1)  # well past the 0.2 s timeout; the server waits for it on close
        return web.Response()

    async def scenario() -> tuple[UpstreamError, UpstreamError]:
        async with _device_api(handler) as (url, _):
            client = DeviceApiClient(url, timeout=0.2, retries=0)
            try:
                with pytest.raises(UpstreamError) as hung:
                    await client.objects()
            finally:
                await client.aclose()
        closed = DeviceApiClient(url, timeout=1.0, retries=0)  # the server is gone now
        try:
            with pytest.raises(UpstreamError) as refused:
                await closed.objects()
        finally:
            await closed.aclose()
        return hung.value, refused.value

    hung, refused = _run(scenario)
    assert hung.reason == "timeout"
    assert refused.reason == "connect"


def test_missing_iot_data_switches_to_iot_objects_for_good() -> None:
    """A 404 on /iot_data with a 200 on /iot_objects/{id} moves the client to the latter."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/iot_data/"):
            return web.Response(status=404)
        return web.json_response({"id": request.match_info["tail"]})

    async def scenario() -> tuple[list[Any], list[str], str]:
        async with _device_api(handler) as (url, seen):
            client = DeviceApiClient(url)
            try:
                bodies = [await client.data("d1"), await client.data("a/b c")]
            finally:
                await client.aclose()
            return bodies, seen, client.data_path

    bodies, seen, path = _run(scenario)
    assert path == "/iot_objects/{id}"
    # Ids are one path segment: "/" and spaces are quoted, not re-interpreted.
    assert seen == ["/iot_data/d1", "/iot_objects/d1", "/iot_objects/a%2Fb%20c"]
    assert bodies[0] == {"id": "iot_objects/d1"}


def test_breaker_opens_after_the_threshold_and_stops_calling() -> None:
    """After ``threshold`` outages the breaker is open: no request leaves, the error says why."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=502)

    async def scenario() -> tuple[list[str], list[str]]:
        async with _device_api(handler) as (url, seen):
            breaker = CircuitBreaker(threshold=2, cooldown=60)
            client = DeviceApiClient(url, retries=0, breaker=breaker)
            reasons = []
            try:
                for _ in range(4):
                    with pytest.raises(UpstreamError) as caught:
                        await client.objects()
                    reasons.append(caught.value.reason)
            finally:
                await client.aclose()
            return reasons, seen

    reasons, seen = _run(scenario)
    assert reasons == ["status", "status", "circuit_open", "circuit_open"]
    assert len(seen) == 2
