"""docs/api.md is generated from the two apps' OpenAPI schemas and must match them."""

from tools.docs_gen.api import render_api
from tools.docs_gen.generate import DOCS_DIR, openapi_specs

API_MD = DOCS_DIR / "api.md"


def test_api_doc_is_up_to_date():
    """The committed docs/api.md equals what the generator makes from the current code."""
    expected = render_api(*openapi_specs())
    assert API_MD.read_text() == expected, "docs/api.md is out of date: run `make docs` and commit it"


def test_every_endpoint_has_a_section():
    """Each method and path of both OpenAPI schemas has its own heading in docs/api.md."""
    text = API_MD.read_text()
    missing = [
        f"{method.upper()} {path}"
        for spec in openapi_specs()
        for path, item in spec["paths"].items()
        for method in item
        if f"\n### {method.upper()} {path}\n" not in text
    ]
    assert not missing, f"endpoints without a section in docs/api.md: {missing} (run `make docs`)"


def test_keyed_endpoints_document_401():
    """Every edge endpoint that takes a key lists the 401 answer next to it."""
    _, edge = openapi_specs()
    text = API_MD.read_text().split("\n## Edge API", 1)[1].split("\n## Schemas", 1)[0]
    for path, item in edge["paths"].items():
        for method, operation in item.items():
            if operation.get("security"):
                section = text.split(f"\n### {method.upper()} {path}\n", 1)[1].split("\n### ", 1)[0]
                assert '| 401 | `{"error": "Unauthorized"}`' in section, f"{method} {path}"
