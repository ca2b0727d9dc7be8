"""Keep a translated guide in step with the English one: same sections, same examples, same outputs."""

from pathlib import Path

from tools.docs_gen.examples import Block, find_blocks

__all__ = ["TRANSLATIONS", "example_blocks", "heading_levels", "sync_outputs"]

_DOCS = Path(__file__).resolve().parents[2] / "docs"
TRANSLATIONS: dict[Path, Path] = {_DOCS / "guide.md": _DOCS / "fr" / "guide.md"}
"""English document -> its translation."""

_EXAMPLE_KINDS = ("runnable", "output", "course-docker")


def heading_levels(path: Path) -> list[int]:
    """The level of each Markdown heading outside code blocks, in order."""
    lines = path.read_text().split("\n")
    inside = {index for block in find_blocks(path) for index in range(block.start, block.end + 1)}
    return [
        len(line) - len(line.lstrip("#"))
        for index, line in enumerate(lines)
        if index not in inside and line.startswith("#") and line.lstrip("#").startswith(" ")
    ]


def example_blocks(path: Path) -> list[Block]:
    """The blocks a translation must repeat: runnable examples, their outputs, the course's docker set-ups."""
    return [
        block
        for block in find_blocks(path)
        if block.runnable or block.is_output or block.info.split()[1:2] == ["course-docker"]
    ]


def sync_outputs(source: Path, translation: Path) -> bool:
    """Copy the output blocks of ``source`` into ``translation``, in order; returns whether it changed."""
    theirs = [block for block in find_blocks(source) if block.is_output]
    ours = [block for block in find_blocks(translation) if block.is_output]
    if len(theirs) != len(ours):
        raise ValueError(f"{translation} has {len(ours)} output blocks, {source} has {len(theirs)}")
    lines = translation.read_text().split("\n")
    before = list(lines)
    for mine, original in reversed(list(zip(ours, theirs, strict=True))):
        lines[mine.start : mine.end + 1] = source.read_text().split("\n")[original.start : original.end + 1]
    translation.write_text("\n".join(lines))
    return lines != before
