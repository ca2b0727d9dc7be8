"""The edge server: collector, store, rules and the per-client API."""

from iotedge.edge.app import create_app

__all__ = ["create_app"]
