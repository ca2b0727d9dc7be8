"""``python -m tools.docs_gen [examples]``: regenerate the docs, or refresh example outputs."""

import argparse
import sys
from pathlib import Path

from tools.docs_gen.generate import DOCS_DIR, write_generated


def main(argv: list[str] | None = None) -> int:
    """Regenerate docs/api.md, docs/configuration.md and the module map (or example outputs)."""
    parser = argparse.ArgumentParser(prog="python -m tools.docs_gen", description=__doc__)
    parser.add_argument("what", nargs="?", choices=["generated", "examples"], default="generated")
    parser.add_argument("--docs-dir", type=Path, default=DOCS_DIR)
    parser.add_argument("--warmup", type=float, default=20.0, help="examples: seconds of polling first")
    parser.add_argument("files", nargs="*", type=Path, help="examples: Markdown files (default: all)")
    args = parser.parse_args(argv)
    if args.what == "generated":
        for path in write_generated(args.docs_dir):
            sys.stdout.write(f"wrote {path}\n")
        return 0
    from tools.docs_gen.examples import refresh_outputs

    files = args.files or [args.docs_dir.parent / "README.md", *sorted(args.docs_dir.glob("*.md"))]
    failed = refresh_outputs(files, warmup=args.warmup)
    from tools.docs_gen.translation import TRANSLATIONS, sync_outputs

    for source, translation in TRANSLATIONS.items():
        if source in files and sync_outputs(source, translation):
            sys.stdout.write(f"copied the shown outputs of {source.name} into {translation}\n")
    for where in failed:
        sys.stderr.write(f"example failed (output kept): {where}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
