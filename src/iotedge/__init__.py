"""iotedge: a reference IoT edge gateway with its own device API simulator."""

__all__ = ["__version__"]

__version__ = "0.1.0"
