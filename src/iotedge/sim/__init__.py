"""The device API simulator."""

from iotedge.sim.app import create_app

__all__ = ["create_app"]
