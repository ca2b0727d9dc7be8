"""Anomaly rules: each rule fires, hysteresis makes one excursion one event, state resumes."""

import json
from pathlib import Path

import pytest

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.rules import DEFAULT_RULES, RuleEngine, RuleSet, Transitions, load_rules
from iotedge.edge.store import Store
from iotedge.errors import ConfigError

T0 = 1_795_953_600.0
TEMP = CatalogueEntry("device_1", "client_1", "temperature_sensor")
OBJECTS = {TEMP.id: TEMP}


def _engine(tmp_path: Path, rules: RuleSet = DEFAULT_RULES) -> tuple[RuleEngine, Store]:
    store = Store(tmp_path / "s.sqlite3")
    store.upsert_objects([TEMP], T0)
    return RuleEngine(rules, poll_interval=5.0), store


def _record(store: Store, transitions: Transitions, now: float) -> None:
    """What the collector does with an evaluation: record it."""
    store.record_transitions(transitions.opened, transitions.closed, edge_id="t", now=now)


def _evaluate(
    engine: RuleEngine, store: Store, readings: list[Reading], now: float, *, check_offline: bool = False
) -> Transitions:
    transitions = engine.evaluate(readings, OBJECTS, now=now, check_offline=check_offline)
    _record(store, transitions, now)
    return transitions


def _feed(
    engine: RuleEngine, store: Store, values: list[float], start: float = T0, metric: str = "temperature"
) -> None:
    for i, value in enumerate(values):
        reading = Reading("device_1", "client_1", metric, start + 5 * i, value)
        store.insert_readings([reading])
        _evaluate(engine, store, [reading], reading.ts)


def _events(store: Store, rule: str) -> list[tuple[float, float | None]]:
    return [(r.started_at, r.ended_at) for r in store.anomalies(None, rule=rule)]


def test_one_excursion_is_one_event_with_start_and_end(tmp_path: Path) -> None:
    """Readings hovering above 30 then back to normal make one event, ended when it cleared."""
    engine, store = _engine(tmp_path)
    _feed(engine, store, [25, 31, 32, 29.9, 31, 33, 25, 25])
    events = _events(store, "temperature_high")
    assert events == [(T0 + 5, T0 + 30)]
    assert engine.open_count == 0


def test_low_threshold_and_battery_critical(tmp_path: Path) -> None:
    """Below-limits fire their own rules with the configured severity."""
    engine, store = _engine(tmp_path)
    _feed(engine, store, [15.0])
    _feed(engine, store, [12.0], start=T0 + 100, metric="battery_level")
    assert len(_events(store, "temperature_low")) == 1
    [battery] = store.anomalies(None, rule="battery_level_low")
    assert battery.severity == "critical"
    assert battery.ended_at is None


def test_zscore_catches_a_jump_inside_the_normal_range(tmp_path: Path) -> None:
    """A jump from a quiet 22.0 +- 0.1 to 28 (within thresholds) is a z-score anomaly."""
    engine, store = _engine(tmp_path)
    _feed(engine, store, [22.0 + 0.1 * (i % 3) for i in range(30)] + [28.0])
    assert len(_events(store, "zscore")) == 1
    assert _events(store, "temperature_high") == []


def test_stuck_value(tmp_path: Path) -> None:
    """Twenty identical readings open a stuck event; a change closes it."""
    engine, store = _engine(tmp_path)
    _feed(engine, store, [23.45] * 20 + [23.5])
    [(start, end)] = _events(store, "stuck")
    assert start == T0 + 5 * 19
    assert end == T0 + 5 * 20


def test_offline_opens_when_silent_and_closes_on_data(tmp_path: Path) -> None:
    """No primary reading for more than 3 of its periods (+1 poll) opens 'offline'; a reading closes it."""
    engine, store = _engine(tmp_path)
    _feed(engine, store, [23.0, 23.1], start=T0 - 5)  # a 5 s cadence, the poll interval
    _evaluate(engine, store, [], T0 + 15, check_offline=True)
    assert _events(store, "offline") == []
    _evaluate(engine, store, [], T0 + 25, check_offline=True)
    _evaluate(engine, store, [], T0 + 30, check_offline=True)
    assert _events(store, "offline") == [(T0 + 25, None)]
    _feed(engine, store, [23.1], start=T0 + 35)
    assert _events(store, "offline") == [(T0 + 25, T0 + 35)]


def test_repeated_readings_are_evaluated_once(tmp_path: Path) -> None:
    """The same reading seen in two polls (one device bucket) does not double-count."""
    engine, store = _engine(tmp_path)
    reading = Reading("device_1", "client_1", "temperature", T0, 35.0)
    _evaluate(engine, store, [reading], T0)
    _evaluate(engine, store, [reading], T0 + 1)
    assert len(_events(store, "temperature_high")) == 1
    assert store.database.query("SELECT COUNT(*) FROM outbox")[0][0] == 1


def test_open_events_resume_after_restart(tmp_path: Path) -> None:
    """A new engine on the same store closes the event the old one opened."""
    engine, store = _engine(tmp_path)
    _feed(engine, store, [35.0])
    resumed = RuleEngine(DEFAULT_RULES, poll_interval=5.0, open_events=store.open_anomalies())
    assert resumed.open_count == 1
    _feed(resumed, store, [25.0], start=T0 + 10)
    assert _events(store, "temperature_high") == [(T0, T0 + 10)]


def test_a_takeover_resumes_the_events_another_engine_opened_and_closed(tmp_path: Path) -> None:
    """B opened an event; A took device_1 over, closed it and opened another; B takes it back."""
    b, store = _engine(tmp_path)
    _feed(b, store, [35.0])  # B opens the first event
    a = RuleEngine(DEFAULT_RULES, poll_interval=5.0)
    a.resume(store.open_anomalies(), {"device_1"}, {("device_1", "temperature"): T0})
    _feed(a, store, [25.0, 36.0], start=T0 + 5)  # A closes it and opens a second one
    assert [ended for _, ended in _events(store, "temperature_high")] == [None, T0 + 5]
    b.resume(store.open_anomalies(), {"device_1"}, {("device_1", "temperature"): T0 + 10})
    assert b.open_count == 1
    _feed(b, store, [36.5, 25.0], start=T0 + 15)  # still high (no third event), then cleared
    assert sorted(_events(store, "temperature_high")) == [(T0, T0 + 5), (T0 + 10, T0 + 20)]
    assert store.open_anomalies() == []


def test_rules_file(tmp_path: Path) -> None:
    """A rules file replaces the defaults; a bad one is a ConfigError naming the file."""
    path = tmp_path / "rules.json"
    path.write_text(
        json.dumps({"thresholds": [{"metric": "humidity", "above": 70}], "stuck": {"readings": 5}})
    )
    rules = load_rules(path)
    assert [r.name for r in rules.thresholds] == ["humidity_high"]
    assert rules.stuck.readings == 5
    path.write_text(json.dumps({"thresholds": [{"metric": "pressure", "above": 1}]}))
    with pytest.raises(ConfigError, match=r"rules\.json"):
        load_rules(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        load_rules(path)


def test_shipped_rules_files_load() -> None:
    """Every rules file shipped under deploy/ is valid for the edge."""
    shipped = sorted(Path(__file__).parents[2].glob("deploy/**/rules*.json"))
    assert shipped
    for path in shipped:
        assert load_rules(path).thresholds


def test_an_excursion_inside_one_batch_opens_and_closes(tmp_path: Path) -> None:
    """A spike that starts and ends within one batch (a history backfill) is closed at once."""
    engine, store = _engine(tmp_path)
    batch = [
        Reading("device_1", "client_1", "temperature", T0 + 60 * i, v)
        for i, v in enumerate([25, 35, 25, 36, 25])
    ]
    store.insert_readings(batch)
    _evaluate(engine, store, batch, T0 + 300)
    assert sorted(_events(store, "temperature_high")) == [(T0 + 60, T0 + 120), (T0 + 180, T0 + 240)]
    assert engine.open_count == 0
    transitions = store.database.query("SELECT transition FROM outbox ORDER BY id")
    assert [t for (t,) in transitions] == ["opened", "resolved", "opened", "resolved"]


def test_fast_polling_of_a_slow_device_opens_no_offline_event(tmp_path: Path) -> None:
    """Polled every second, a device reporting every 5 s is judged by its own cadence (finding 8)."""
    store = Store(tmp_path / "s.sqlite3")
    store.upsert_objects([TEMP], T0)
    engine = RuleEngine(DEFAULT_RULES, poll_interval=1.0)
    opened = 0
    for tick in range(120):  # two minutes of 1 s polls; the reading changes every 5 s
        now = T0 + tick + 0.7  # a poll lands mid-second: the newest reading can be 4.7 s old
        reading = Reading(
            "device_1", "client_1", "temperature", T0 + 5 * (tick // 5), 23.0 + 0.01 * (tick // 5)
        )
        opened += len(_evaluate(engine, store, [reading], now, check_offline=True).opened)
    assert opened == 0
    assert _events(store, "offline") == []


def test_a_silent_device_is_offline_after_three_of_its_own_periods(tmp_path: Path) -> None:
    """The same device falls silent: offline opens once its newest reading is 3 periods (+1 poll) old."""
    store = Store(tmp_path / "s.sqlite3")
    store.upsert_objects([TEMP], T0)
    engine = RuleEngine(DEFAULT_RULES, poll_interval=1.0)
    for i in range(6):
        _evaluate(
            engine, store, [Reading("device_1", "client_1", "temperature", T0 + 5 * i, 23.0)], T0 + 5 * i
        )
    last = T0 + 25
    _evaluate(engine, store, [], last + 16, check_offline=True)
    assert _events(store, "offline") == []
    _evaluate(engine, store, [], last + 16.5, check_offline=True)
    assert _events(store, "offline") == [(last + 16.5, None)]


def test_the_cadence_comes_from_stored_history_after_a_restart(tmp_path: Path) -> None:
    """A baseline (stored times) gives a restarted engine the cadence before any new reading."""
    from iotedge.edge.rules import Baseline

    engine = RuleEngine(DEFAULT_RULES, poll_interval=1.0, last_seen={("device_1", "temperature"): T0 + 25})
    assert engine.baseline_needs([], OBJECTS) == {("device_1", "temperature"): float("inf")}
    times = [T0 + 5 * i for i in range(6)]
    baseline = Baseline(times=times, values=[23.0] * 6)
    quiet = engine.evaluate(
        [], OBJECTS, now=T0 + 35, check_offline=True, baselines={("device_1", "temperature"): baseline}
    )
    assert quiet.opened == []
    assert engine.baseline_needs([], OBJECTS) == {}


def test_evaluate_is_pure_and_draws_event_ids() -> None:
    """No store: the engine returns transitions whose ids come from the injected source."""
    ids = iter([101, 102])
    engine = RuleEngine(DEFAULT_RULES, poll_interval=5.0, new_id=lambda: next(ids))
    out = engine.evaluate(
        [Reading("device_1", "client_1", "temperature", T0, 35.0)], OBJECTS, now=T0, check_offline=False
    )
    assert [(e.id, e.rule) for e in out.opened] == [(101, "temperature_high")]
    out = engine.evaluate(
        [Reading("device_1", "client_1", "temperature", T0 + 5, 25.0)],
        OBJECTS,
        now=T0 + 5,
        check_offline=False,
    )
    assert [(c.event_id, c.ended_at) for c in out.closed] == [(101, T0 + 5)]


def test_a_moved_object_is_judged_without_its_old_owners_values() -> None:
    """forget() empties the z-score window: the new owner's first readings set no baseline yet."""
    engine = RuleEngine(DEFAULT_RULES, poll_interval=5.0)
    calm = [
        Reading("device_1", "client_1", "temperature", T0 + 5 * i, 22.0 + 0.1 * (i % 3)) for i in range(30)
    ]
    engine.evaluate(calm, OBJECTS, now=T0 + 150, check_offline=False)
    jump = Reading("device_1", "client_2", "temperature", T0 + 155, 28.0)
    moved = {TEMP.id: CatalogueEntry("device_1", "client_2", "temperature_sensor")}
    engine.forget("device_1")
    out = engine.evaluate([jump], moved, now=T0 + 155, check_offline=False)
    assert [e.rule for e in out.opened] == []  # with the old window this jump was a z-score event


def test_interleaved_excursions_of_many_objects_in_one_batch_end_on_their_own() -> None:
    """A backfill-sized batch: each object's spikes open and close its own events, messages included."""
    objects = {
        f"device_{n}": CatalogueEntry(f"device_{n}", "client_1", "temperature_sensor") for n in range(50)
    }
    spikes = {f"device_{n}": [(n % 7) + 1, (n % 7) + 3] for n in range(50)}  # spiked minutes
    batch = [
        Reading(
            object_id,
            "client_1",
            "temperature",
            T0 + 60 * minute,
            35.0 if minute in spikes[object_id] else 25.0,
        )
        for minute in range(12)
        for object_id in objects
    ]
    engine = RuleEngine(DEFAULT_RULES, poll_interval=5.0)
    out = engine.evaluate(batch, objects, now=T0 + 720, check_offline=False)
    got = sorted(
        (e.object_id, e.started_at, e.ended_at, e.message) for e in out.opened if e.rule == "temperature_high"
    )
    expected = sorted(
        (object_id, T0 + 60 * minute, T0 + 60 * (minute + 1), f"{object_id} temperature 35 above 30")
        for object_id, minutes in spikes.items()
        for minute in minutes
    )
    assert got == expected
    assert engine.open_count == 0 and not out.closed
