"""Allow ``python -m iotedge``."""

from iotedge.cli import main

main()
