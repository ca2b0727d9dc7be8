"""What the edge speaks to Grafana: the JSON data source target grammar; the reads are edge/reads/."""

from iotedge.edge.grafana.targets import (
    AGGREGATES,
    TABLES,
    SeriesTarget,
    TableTarget,
    parse_target,
)

__all__ = ["AGGREGATES", "TABLES", "SeriesTarget", "TableTarget", "parse_target"]
