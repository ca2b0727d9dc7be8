"""The vendored Swagger UI and ReDoc files match their manifest: versions, licences, checksums."""

import hashlib
from importlib import resources

from iotedge.apidocs import manifest

ASSETS = resources.files("iotedge.apidocs").joinpath("assets")


def test_every_vendored_file_matches_its_checksum() -> None:
    """Each file in assets/ is listed with its sha256, and nothing listed is missing."""
    listed = manifest()["sha256"]
    present = {entry.name for entry in ASSETS.iterdir() if entry.name != "MANIFEST.json"}
    assert set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256(ASSETS.joinpath(name).read_bytes()).hexdigest() == digest, name


def test_each_package_names_its_version_licence_and_files() -> None:
    """Swagger UI and ReDoc each carry a version, an SPDX licence and their licence texts."""
    packages = {package["name"]: package for package in manifest()["packages"]}
    assert set(packages) == {"swagger-ui-dist", "redoc"}
    for package in packages.values():
        assert package["version"].count(".") == 2
        assert package["license"] in ("Apache-2.0", "MIT")
        for name in [*package["licence_files"], *package["files"]]:
            assert name in manifest()["sha256"], name
