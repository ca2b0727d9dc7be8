"""``python -m tools.diagram [--check]``: render docs/img/overview.svg from docs/img/overview.json.

The picture is plain SVG (rectangles, text, lines; no script, no external font), so GitHub,
editors and browsers all show it. The source is a small JSON file of boxes and arrows:
arrows run between the facing sides of two boxes, at the middle of their vertical overlap.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["render"]

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docs" / "img" / "overview.json"
TARGET = ROOT / "docs" / "img" / "overview.svg"
_FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
_LINE = 18  # pixels between two text lines of a box


def _box(box: dict[str, Any]) -> list[str]:
    x, y, w, h = box["x"], box["y"], box["w"], box["h"]
    parts = [
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="10" fill="#f4f7fb" stroke="#34495e" '
        'stroke-width="1.5"/>',
        f'<text x="{x + w / 2:g}" y="{y + 24}" text-anchor="middle" font-weight="bold" '
        f'font-size="15">{escape(box["title"])}</text>',
    ]
    for index, line in enumerate(box.get("lines", [])):
        parts.append(
            f'<text x="{x + 12}" y="{y + 48 + index * _LINE}" font-size="13" xml:space="preserve">'
            f"{escape(line)}</text>"
        )
    return parts


def _arrow(start: dict[str, Any], end: dict[str, Any], label: str) -> list[str]:
    top = max(start["y"], end["y"])
    bottom = min(start["y"] + start["h"], end["y"] + end["h"])
    if top >= bottom:
        raise ValueError(f"{start['id']} and {end['id']} do not overlap vertically")
    y = (top + bottom) / 2
    x1, x2 = start["x"] + start["w"], end["x"]
    return [
        f'<line x1="{x1}" y1="{y:g}" x2="{x2 - 2}" y2="{y:g}" stroke="#2c3e50" stroke-width="2" '
        'marker-end="url(#head)"/>',
        f'<text x="{(x1 + x2) / 2:g}" y="{y - 8:g}" text-anchor="middle" font-size="12" '
        f'fill="#2c3e50">{escape(label)}</text>',
    ]


def render(source: dict[str, Any]) -> str:
    """The SVG text for a diagram source."""
    boxes = {box["id"]: box for box in source["boxes"]}
    width, height = source["width"], source["height"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {_FONT} role="img">',
        f"<title>{escape(source['title'])}</title>",
        '<defs><marker id="head" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
        '<path d="M0,0 L10,4 L0,8 z" fill="#2c3e50"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for column in source.get("columns", []):
        parts.append(
            f'<text x="{column["x"]}" y="22" text-anchor="middle" font-size="13" fill="#7f8c8d" '
            f'letter-spacing="2">{escape(column["label"].upper())}</text>'
        )
    for box in source["boxes"]:
        parts += _box(box)
    for arrow in source["arrows"]:
        parts += _arrow(boxes[arrow["from"]], boxes[arrow["to"]], arrow["label"])
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/img/overview.svg, or with --check say whether the committed one is current."""
    parser = argparse.ArgumentParser(prog="python -m tools.diagram", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed SVG differs")
    args = parser.parse_args(argv)
    svg = render(json.loads(SOURCE.read_text()))
    if args.check:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != svg:
            sys.stderr.write(f"{TARGET} is out of date: run `make diagram`\n")
            return 1
        return 0
    TARGET.write_text(svg)
    sys.stdout.write(f"wrote {TARGET}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
