"""Multi-value ``client_id``/``object_id``/``metric`` parameters, checked against the key's scope."""

from iotedge.config import EdgeSettings
from iotedge.edge.auth import Principal
from iotedge.edge.reads import View, split_values
from iotedge.errors import BadRequest, NotFound
from iotedge.specs import METRICS

__all__ = ["LIST_HELP", "MAX_LIST_LENGTH", "clients_param", "metrics_param", "objects_param"]

LIST_HELP = "One value, a comma-separated list (Grafana's ${var:csv}), or * for all."

MAX_LIST_LENGTH: int = EdgeSettings.model_fields["max_url"].default // 4
"""Longest list parameter: a quarter of the default URL limit, so that an operation's three
lists (client, object, metric) and its window fit in one URL (ASCII; escapes take more)."""


def clients_param(principal: Principal, text: str | None) -> tuple[str, ...] | None:
    """The clients a parameter names (None = all the key may see).

    Raises:
        NotFound: when one of them is not visible to the key (as for a single client).
    """
    values = split_values(text)
    for client in values or ():
        if not principal.can_see(client):
            raise NotFound("Client not found")
    return values


def objects_param(view: View, text: str | None) -> tuple[str, ...] | None:
    """The objects a parameter names (None = all).

    Raises:
        NotFound: when one of them does not exist for the key.
    """
    values = split_values(text)
    for object_id in values or ():
        if object_id not in view.by_id:
            raise NotFound("Object not found")
    return values


def metrics_param(text: str | None) -> tuple[str, ...] | None:
    """The metrics a parameter names (None = all).

    Raises:
        BadRequest: for an unknown metric.
    """
    values = split_values(text)
    for metric in values or ():
        if metric not in METRICS:
            raise BadRequest("metric", f"must be one of {', '.join(METRICS)}")
    return values
