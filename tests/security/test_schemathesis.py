"""Both apps answer as their OpenAPI schemas say: schemathesis with every check enabled.

Issue 13 finding 10. Each operation gets schema-valid and schema-violating requests (the
CLI's ``--checks all``), then the stateful phase follows the links between operations:
the edge's own (``/objects`` gives the ids ``/objects/{object_id}`` and ``/processed_data``
take, see ``edge/openapi.py``) and those schemathesis infers. Examples are bounded
(``IOTEDGE_SCHEMATHESIS_EXAMPLES``, default 8) and derandomized, so a run takes seconds and
never varies.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, start_iotedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = int(os.environ.get("IOTEDGE_SCHEMATHESIS_EXAMPLES", "8"))

# Schema-valid requests may still break a rule no JSON Schema can state across parameters
# ('from' before 'to', a window of at most 31 days, a metric the object's type measures):
# those are 422s that name the parameter. A value that fits its maxLength can still pass the
# URL limit once percent-encoded (4 bytes of UTF-8 become 12): that is the documented 414.
_POSITIVE_OK = ["2xx", "401", "404", "414", "422", "429"]
_NEGATIVE_OK = ["400", "401", "404", "405", "413", "414", "415", "422", "429", "431"]

_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _load(url: str, key: str | None) -> Any:
    data: dict[str, Any] = {
        "request-timeout": 30,  # seconds: the 2-core CI machine can be busy; no request waits that long
        "checks": {
            "positive_data_acceptance": {"expected-statuses": _POSITIVE_OK},
            "negative_data_rejection": {"expected-statuses": _NEGATIVE_OK},
        },
    }
    if key is not None:
        data["auth"] = {"openapi": {"APIKeyHeader": {"api_key": key}}}
    config = schemathesis.Config.from_dict(data)
    config.projects.get_default().checks.update(included_check_names=["all"])
    return schemathesis.openapi.from_url(url + "/openapi.json", config=config)


@pytest.fixture(scope="module")
def edge(sim: Proc, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """An edge with data, no rate limit (schemathesis sends hundreds of requests at once)."""
    env = {**edge_env(), "IOTEDGE_RATE_LIMIT": "0"}
    args = edge_args(sim.url, tmp_path_factory.mktemp("schemathesis"))
    with start_iotedge(args, log_dir=logs_dir, env=env) as proc:
        wait_for(lambda: _ready(proc), 30, "the edge to be ready")
        yield proc


@pytest.fixture(scope="module")
def own_sim(logs_dir: Path) -> Iterator[Proc]:
    """A simulator of its own: schemathesis switches its faults on (the session's must stay clean)."""
    with start_iotedge(["sim", "--seed", "42"], log_dir=logs_dir) as proc:
        yield proc


_NO_FAULTS = {"latency_ms": 0, "jitter_ms": 0, "error_rate": 0, "garbage_rate": 0, "hang_rate": 0}


def _faults_off(url: str) -> Callable[[Any], None]:
    def after(case: Any) -> None:
        if case.method.upper() == "PUT" and case.path == "/_sim/faults":
            httpx.put(url + "/_sim/faults", json=_NO_FAULTS, timeout=10).raise_for_status()

    return after


def _ready(proc: Proc) -> bool:
    return httpx.get(proc.url + "/readyz", timeout=5).status_code == 200


def _failures(schema: Any, mode: GenerationMode, after: Callable[[Any], None] | None = None) -> list[str]:
    """Run every operation in ``mode``; the failures schemathesis reports, one line each.

    ``after`` runs after each case (the simulator's fault switch is turned back off).
    """
    found: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy(generation_mode=mode)

        @_SETTINGS
        @given(case=strategy)
        def run(case: Any) -> None:
            try:
                case.call_and_validate()
            finally:
                if after is not None:
                    after(case)

        try:
            run()
        except Unsatisfiable:  # nothing to violate (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, operation.label
        except BaseException as exc:  # noqa: BLE001 - schemathesis raises a group; report them all
            found.append(f"{mode.value} {operation.label}: {_summary(exc)}")
    return found


def _summary(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    titles = [line for line in lines if line.startswith("- ")]
    return "; ".join(titles) or lines[0] if lines else type(exc).__name__


def _stateful(schema: Any) -> None:
    machine = schema.as_state_machine()
    hypothesis.stateful.run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=5,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("key", ["*", "client_1"])
def test_edge_conforms_to_its_schema(edge: Proc, mode: GenerationMode, key: str) -> None:
    """Every edge operation, with the cloud key and a client's key: 0 schemathesis failures."""
    assert _failures(_load(edge.url, KEYS[key]), mode) == []


def test_edge_stateful_links(edge: Proc) -> None:
    """Sequences that follow the links between edge operations conform too."""
    _stateful(_load(edge.url, KEYS["*"]))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_simulator_conforms_to_its_schema(own_sim: Proc, mode: GenerationMode) -> None:
    """Every simulator operation: 0 schemathesis failures (faults are switched off after each case)."""
    assert _failures(_load(own_sim.url, None), mode, after=_faults_off(own_sim.url)) == []


def test_simulator_stateful_links(own_sim: Proc) -> None:
    """Sequences that follow the links between simulator operations conform (fault switch left out)."""
    _stateful(_load(own_sim.url, None).exclude(method="PUT", path="/_sim/faults"))
