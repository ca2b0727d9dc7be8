"""How each Grafana data source plugin asks the edge for the fleet dashboard's data.

One class per plugin with the same methods, so the fleet dashboard is written once:
Infinity reads the REST endpoints; simPod JSON and Simple JSON send protocol targets
(the same target strings; Simple JSON also names the response ``type``).
"""

from typing import Any

from tools.dashboards.layout import INFINITY, SIMPLE_JSON, SIMPOD_JSON, DataSource

__all__ = ["InfinitySource", "ProtocolSource", "Source"]

_SELECTION = "client_id=${client:csv}&object_id=${object:csv}"
_WINDOW = "from=${__from}&to=${__to}"
_STATS = ("average", "min", "max", "last")


def _all_current() -> dict[str, Any]:
    return {"selected": True, "text": ["All"], "value": ["$__all"]}


def _variable(name: str, label: str, source: DataSource, query: Any, definition: str) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": source.ref,
        "query": query,
        "definition": definition,
        "refresh": 1,
        "multi": True,
        "includeAll": True,
        "current": _all_current(),
        "options": [],
        "sort": 1,
        "regex": "",
        "hide": 0,
        "skipUrlSync": False,
    }


class Source:
    """Targets of the fleet dashboard for one plugin (see the subclasses)."""

    ds: DataSource
    series_display = ""

    def variables(self) -> list[dict[str, Any]]:
        """The ``client`` and ``object`` variables (multi-value, All by default)."""
        raise NotImplementedError

    def annotation(self) -> dict[str, Any]:
        """Anomaly events of the selection as annotations."""
        raise NotImplementedError

    def metric_stats(self, metric: str) -> dict[str, Any]:
        """One row: average, min, max and last of ``metric`` over the selection."""
        raise NotImplementedError

    def metric_series(self, metric: str) -> dict[str, Any]:
        """One series per selected object measuring ``metric``."""
        raise NotImplementedError

    def object_stats(self, metric: str) -> dict[str, Any]:
        """One row per selected object: its statistics of ``metric``."""
        raise NotImplementedError

    def client_stats(self) -> dict[str, Any]:
        """One row per selected client and metric."""
        raise NotImplementedError

    def objects(self) -> dict[str, Any]:
        """One row per selected object: type, staleness, newest values."""
        raise NotImplementedError

    def clients(self) -> dict[str, Any]:
        """One row per selected client: objects and objects offline."""
        raise NotImplementedError

    def anomalies(self) -> dict[str, Any]:
        """Anomaly events of the selection in the time range."""
        raise NotImplementedError


def _infinity(
    url: str, columns: list[tuple[str, str, str]], *, root: str = "", fmt: str = "table"
) -> dict[str, Any]:
    return {
        "refId": "A",
        "type": "json",
        "source": "url",
        "parser": "backend",
        "format": fmt,
        "url": url,
        "url_options": {"method": "GET", "data": ""},
        "root_selector": root,
        "columns": [{"selector": sel, "text": text, "type": kind} for sel, text, kind in columns],
        "filters": [],
    }


class InfinitySource(Source):
    """Infinity: GET the REST endpoints, Grafana's ``${__from}``/``${__to}`` in epoch ms."""

    ds = INFINITY
    series_display = "${__field.labels.series}"

    def variables(self) -> list[dict[str, Any]]:
        """``client`` from /clients, ``object`` from /objects of the chosen clients."""
        clients = _infinity("/clients", [("client_id", "client_id", "string")], root="clients")
        objects = _infinity("/objects?client_id=${client:csv}", [("id", "id", "string")], root="objects")
        return [
            _variable(
                "client",
                "Client",
                self.ds,
                {"queryType": "infinity", "query": "", "infinityQuery": {**clients, "refId": "variable"}},
                "Infinity /clients",
            ),
            _variable(
                "object",
                "Object",
                self.ds,
                {"queryType": "infinity", "query": "", "infinityQuery": {**objects, "refId": "variable"}},
                "Infinity /objects?client_id=${client:csv}",
            ),
        ]

    def _anomaly_query(self, columns: list[tuple[str, str, str]]) -> dict[str, Any]:
        url = f"/anomalies?{_SELECTION}&{_WINDOW}&limit=1000"
        return _infinity(url, columns, root="anomalies")

    def annotation(self) -> dict[str, Any]:
        """Events with ``time``/``timeEnd``/``title``/``text``/``tags`` columns."""
        columns = [
            ("started_at_ms", "time", "timestamp_epoch"),
            ("ended_at_ms", "timeEnd", "timestamp_epoch"),
            ("object_id", "title", "string"),
            ("message", "text", "string"),
            ("severity", "tags", "string"),
        ]
        return {
            "name": "Anomalies",
            "enable": True,
            "iconColor": "red",
            "datasource": self.ds.ref,
            "target": {**self._anomaly_query(columns), "refId": "Anomalies"},
        }

    def metric_stats(self, metric: str) -> dict[str, Any]:
        """/statistics grouped by metric."""
        url = f"/statistics?by=metric&metric={metric}&{_SELECTION}&{_WINDOW}"
        return _infinity(url, [("metric", "metric", "string"), *[(s, s, "number") for s in _STATS]])

    def metric_series(self, metric: str) -> dict[str, Any]:
        """/readings in long format; Infinity splits it into one series per ``series``."""
        url = f"/readings?metric={metric}&{_SELECTION}&{_WINDOW}&step_ms=${{__interval_ms}}"
        columns = [("timestamp", "Time", "timestamp_epoch"), ("series", "series", "string")]
        return _infinity(url, [*columns, ("value", "Value", "number")], fmt="timeseries")

    def object_stats(self, metric: str) -> dict[str, Any]:
        """/statistics grouped by object."""
        url = f"/statistics?by=object&metric={metric}&{_SELECTION}&{_WINDOW}"
        return _infinity(url, [("object_id", "object_id", "string"), *[(s, s, "number") for s in _STATS]])

    def client_stats(self) -> dict[str, Any]:
        """/statistics grouped by client."""
        url = f"/statistics?by=client&client_id=${{client:csv}}&{_WINDOW}"
        columns = [("client_id", "client_id", "string"), ("metric", "metric", "string")]
        numbers = ("objects", "count", "average", "min", "max", "stddev", "last")
        return _infinity(url, [*columns, *[(n, n, "number") for n in numbers]])

    def objects(self) -> dict[str, Any]:
        """/objects of the chosen clients."""
        columns = [
            ("id", "object_id", "string"),
            ("client", "client_id", "string"),
            ("type", "type", "string"),
            ("stale", "stale", "boolean"),
            ("last_reading_at", "last_reading_at", "timestamp"),
            ("latest.battery_level", "battery_level", "number"),
        ]
        return _infinity("/objects?client_id=${client:csv}", columns, root="objects")

    def clients(self) -> dict[str, Any]:
        """/clients with their offline counts."""
        columns = [("client_id", "client_id", "string"), ("objects", "objects", "number")]
        return _infinity(
            "/clients?client_id=${client:csv}", [*columns, ("offline", "offline", "number")], root="clients"
        )

    def anomalies(self) -> dict[str, Any]:
        """/anomalies of the selection in the time range."""
        return self._anomaly_query(
            [
                ("started_at_ms", "started", "timestamp_epoch"),
                ("ended_at_ms", "ended", "timestamp_epoch"),
                ("object_id", "object_id", "string"),
                ("client", "client_id", "string"),
                ("metric", "metric", "string"),
                ("rule", "rule", "string"),
                ("severity", "severity", "string"),
                ("value", "value", "number"),
                ("message", "message", "string"),
            ]
        )


class ProtocolSource(Source):
    """simPod JSON or Simple JSON: POST /query with target strings.

    Variables in targets are interpolated with Grafana's regex format, so a multi-value
    ``$object`` arrives as ``(device_1|device_2)``, which the grammar reads as a list.
    """

    def __init__(self, ds: DataSource) -> None:
        self.ds = ds
        self.simple = ds == SIMPLE_JSON

    def _target(self, text: str, *, table: bool) -> dict[str, Any]:
        if self.simple:
            return {"refId": "A", "target": text, "type": "table" if table else "timeserie"}
        return {"refId": "A", "target": text, "payload": "", "editorMode": "code"}

    def _variable_query(self, text: str) -> Any:
        return text if self.simple else {"query": text, "format": "string", "refId": "variable"}

    def variables(self) -> list[dict[str, Any]]:
        """Finder queries: ``clients`` and ``objects?client_id=$client``."""
        objects = "objects?client_id=$client"
        return [
            _variable("client", "Client", self.ds, self._variable_query("clients"), "clients"),
            _variable("object", "Object", self.ds, self._variable_query(objects), objects),
        ]

    def annotation(self) -> dict[str, Any]:
        """Simple JSON: /annotations with the objects; simPod: the ``anomalies`` table target."""
        body: dict[str, Any] = {
            "name": "Anomalies",
            "enable": True,
            "iconColor": "red",
            "datasource": self.ds.ref,
        }
        if self.simple:
            return {**body, "query": "$object"}
        target = self._target("anomalies?client_id=$client&object_id=$object", table=True)
        return {**body, "target": {**target, "refId": "Anomalies"}}

    def metric_stats(self, metric: str) -> dict[str, Any]:
        """The ``statistics`` table grouped by metric."""
        return self._target(
            f"statistics?by=metric&metric={metric}&client_id=$client&object_id=$object", table=True
        )

    def metric_series(self, metric: str) -> dict[str, Any]:
        """``$object.METRIC``: one series per object that measures it."""
        return self._target(f"$object.{metric}", table=False)

    def object_stats(self, metric: str) -> dict[str, Any]:
        """The ``statistics`` table grouped by object."""
        return self._target(
            f"statistics?by=object&metric={metric}&client_id=$client&object_id=$object", table=True
        )

    def client_stats(self) -> dict[str, Any]:
        """The course's ``client_statistics`` table."""
        return self._target("client_statistics?client_id=$client", table=True)

    def objects(self) -> dict[str, Any]:
        """The ``objects`` table."""
        return self._target("objects?client_id=$client&object_id=$object", table=True)

    def clients(self) -> dict[str, Any]:
        """The ``clients`` table."""
        return self._target("clients?client_id=$client", table=True)

    def anomalies(self) -> dict[str, Any]:
        """The ``anomalies`` table."""
        return self._target("anomalies?client_id=$client&object_id=$object", table=True)


SIMPOD = ProtocolSource(SIMPOD_JSON)
SIMPLE = ProtocolSource(SIMPLE_JSON)
