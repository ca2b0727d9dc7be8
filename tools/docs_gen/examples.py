"""Runnable shell examples in the docs: find them, run them, and refresh their shown output.

The convention: a fenced block whose info string is ``sh runnable`` is written exactly as a
reader types it in the repository root while ``make run`` (``iotedge run``) serves on its
default addresses, with the demo keys in the shell (``source data/demo-keys.env``). So it
may use ``http://127.0.0.1:8000`` (simulator), ``:5000`` (edge API), ``:8001`` (metrics),
``$CLIENT_1_KEY`` ... ``$CLOUD_KEY``, ``data/`` and ``.venv/bin/iotedge``. A runner starts
``iotedge run`` on free ports, rewrites those addresses, and runs each block with bash.
A ``text output`` block right after a runnable block shows what it printed in a real run;
``python -m tools.docs_gen examples`` refreshes those from a fresh run.

The tests compare each shown output with what the block prints now, after both pass
through :func:`normalise`, which replaces what legitimately differs between two runs by a
placeholder (see :data:`PLACEHOLDERS`). A block whose output depends on the clock or on
earlier blocks (which anomalies happened in the last hours) is fenced ``text output varies``:
it is run, but its output is not compared.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.docs_gen.markdown import compact_json

__all__ = [
    "DEFAULT_PORTS",
    "PLACEHOLDERS",
    "Block",
    "DemoStack",
    "block_env",
    "demo_stack",
    "find_blocks",
    "format_output",
    "normalise",
    "output_block_of",
    "prepare_workdir",
    "read_keys",
    "refresh_outputs",
    "rewrite_addresses",
    "run_block",
]

DEFAULT_PORTS = {"sim": 8000, "edge": 5000, "metrics": 8001}
"""The addresses examples are written for (what ``make run`` serves)."""

_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
PLACEHOLDERS: tuple[tuple[str, str, str], ...] = (
    # (placeholder, regular expression, what it stands for), applied in this order.
    (
        "<TIME>",
        r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?"
        r"|\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT",
        "a date and time: ISO 8601, the keys table's, an HTTP date",
    ),
    ("<KEY>", r"\bdemo_[\w-]{32}(?![\w-])", "a demo API key"),
    ("<HASH>", r"\b[0-9a-f]{64}\b", "a SHA-256 in hex (key hashes)"),
    ("<ID>", r"(?<![\w-])[0-9a-f]{8}(?![\w-])", "a key id"),
    ("<EDGE>", r'(?<="edge_id": ")[^"]*', "the edge id (the host name by default)"),
    (
        "<NUM>",
        rf"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?(?![\w.])|(?<![\w.])\d{{10,}}(?![\w.])"
        rf'|(?<=": ){_NUMBER}|(?<=\[){_NUMBER}(?=[,\]])|(?<=, ){_NUMBER}(?=[,\]])|(?<=\()\d+(?= more\))',
        "a measurement, count or time: decimals, JSON values, epochs, the size of a cut list",
    ),
)
"""The placeholders shown output is compared under (see :func:`normalise`)."""
_LAYOUT = re.compile(r"\s*([\[\]{},:])\s*")

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MAX_LIST = 8  # longer JSON lists are cut to their first _KEEP items
_KEEP = 5
_MAX_RAW_LINES = 30


@dataclass(frozen=True)
class Block:
    """A fenced code block of a Markdown file (lines are 0-based indexes)."""

    path: Path
    start: int
    end: int
    info: str
    code: str
    indent: str = ""

    @property
    def runnable(self) -> bool:
        """Whether the block is a shell example marked ``runnable``."""
        words = self.info.split()
        return bool(words) and words[0] in ("sh", "bash") and "runnable" in words[1:]

    @property
    def is_output(self) -> bool:
        """Whether the block shows the output of the runnable block before it."""
        words = self.info.split()
        return words[:2] == ["text", "output"]

    @property
    def where(self) -> str:
        """``file:line`` of the opening fence (1-based)."""
        return f"{self.path.name}:{self.start + 1}"


def normalise(text: str) -> str:
    """``text`` with each run-dependent value replaced by its placeholder."""
    for placeholder, pattern, _ in PLACEHOLDERS:
        text = re.sub(pattern, placeholder, text)
    # JSON may be laid out on one line or several depending on how long its values are.
    return _LAYOUT.sub(r"\1", text).strip()


def find_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order (indented ones, in list items, too)."""
    lines = path.read_text().split("\n")
    blocks = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        indent, fence = match["indent"], match["fence"]
        close = index + 1
        while close < len(lines) and lines[close].strip() != fence:
            close += 1
        body = [line.removeprefix(indent) for line in lines[index + 1 : close]]
        blocks.append(Block(path, index, close, match["info"].strip(), "\n".join(body), indent))
        index = close + 1
    return blocks


def output_block_of(blocks: list[Block], block: Block) -> Block | None:
    """The ``text output`` block that directly follows ``block`` (blank lines between allowed)."""
    position = blocks.index(block)
    if position + 1 >= len(blocks):
        return None
    follower = blocks[position + 1]
    between = block.path.read_text().split("\n")[block.end + 1 : follower.start]
    return follower if follower.is_output and not any(line.strip() for line in between) else None


def rewrite_addresses(text: str, ports: dict[str, int], *, reverse: bool = False) -> str:
    """Swap the default loopback ports for ``ports`` (or back, with ``reverse``)."""
    for role, default in DEFAULT_PORTS.items():
        old, new = (ports[role], default) if reverse else (default, ports[role])
        for host in ("127.0.0.1", "localhost"):
            text = re.sub(rf"\b{re.escape(host)}:{old}\b", f"{host}:{new}", text)
    return text


def format_output(text: str) -> str:
    """Make real output readable: JSON pretty-printed and trimmed, other lines as they came."""
    decoder = json.JSONDecoder()
    out: list[str] = []
    raw_lines = 0
    text = text.replace("\r\n", "\n")
    position = 0
    while position < len(text):
        end = text.find("\n", position)
        end = len(text) if end < 0 else end
        line = text[position:end]
        stripped = line.lstrip()
        if not stripped:
            if out and out[-1]:
                out.append("")  # keep one empty line (e.g. between HTTP headers and body)
            position = end + 1
            continue
        if stripped[0] in "[{":
            try:
                value, stop = decoder.raw_decode(text, position + len(line) - len(stripped))
            except ValueError:
                pass
            else:
                # curl prints no newline after a body: the next value may follow on the same line
                out.append(compact_json(value, max_list=_MAX_LIST, keep=_KEEP))
                while stop < len(text) and text[stop] in " \t":
                    stop += 1
                position = stop + 1 if text.startswith("\n", stop) else stop
                continue
        raw_lines += 1
        if raw_lines <= _MAX_RAW_LINES:
            out.append(line.rstrip())
        elif raw_lines == _MAX_RAW_LINES + 1:
            out.append("...")
        position = end + 1
    return "\n".join(out).strip("\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DemoStack:
    """A running ``iotedge run`` and the directory examples run in."""

    ports: dict[str, int]
    workdir: Path
    keys: dict[str, str]

    @property
    def edge_url(self) -> str:
        """Base URL of the edge API."""
        return f"http://127.0.0.1:{self.ports['edge']}"


def prepare_workdir(workdir: Path) -> Path:
    """Give ``workdir`` a ``.venv/bin`` pointing at this interpreter's scripts; returns the data dir."""
    bin_dir = workdir / ".venv" / "bin"
    bin_dir.parent.mkdir(parents=True, exist_ok=True)
    if not bin_dir.exists():
        bin_dir.symlink_to(Path(sys.executable).parent, target_is_directory=True)
    curl_home = workdir / ".curl"
    curl_home.mkdir(exist_ok=True)
    # curl shows a progress meter when its output is not a terminal; a reader never sees it.
    (curl_home / ".curlrc").write_text("--silent\n--show-error\n")
    return workdir / "data"


def read_keys(env_file: Path) -> dict[str, str]:
    """The ``NAME=VALUE`` lines of ``data/demo-keys.env``."""
    keys = {}
    for line in env_file.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            keys[name.strip()] = value.strip()
    return keys


def block_env(workdir: Path, keys: dict[str, str]) -> dict[str, str]:
    """The environment a runnable block sees: the reader's shell after sourcing the demo keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    env.update(keys)
    env["CURL_HOME"] = str(workdir / ".curl")
    env["PATH"] = f"{workdir / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_block(block: Block, stack: DemoStack, *, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run a runnable block with bash (errexit, pipefail) in the stack's work directory."""
    script = rewrite_addresses(block.code, stack.ports)
    return subprocess.run(  # noqa: S603 - runs our own documentation's examples
        ["bash", "-o", "errexit", "-o", "pipefail", "-c", script],  # noqa: S607 - bash from PATH
        cwd=stack.workdir,
        env=block_env(stack.workdir, stack.keys),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
            return int(response.status)
    except OSError as exc:
        return int(getattr(exc, "code", 0) or 0)


@contextlib.contextmanager
def demo_stack(workdir: Path, *, poll_interval: str = "5s", timeout: float = 30.0) -> Iterator[DemoStack]:
    """Run ``iotedge run`` on free ports with its data in ``workdir/data`` until the block ends."""
    data_dir = prepare_workdir(workdir)
    ports = {role: _free_port() for role in DEFAULT_PORTS}
    command = [
        sys.executable, "-m", "iotedge", "run",
        "--sim-port", str(ports["sim"]), "--port", str(ports["edge"]),
        "--metrics-port", str(ports["metrics"]),
        "--data-dir", str(data_dir), "--poll-interval", poll_interval,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    log = (workdir / "iotedge-run.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    try:
        deadline = time.monotonic() + timeout
        ready = f"http://127.0.0.1:{ports['edge']}/readyz"
        while _get(ready) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"iotedge run did not get ready; see {workdir / 'iotedge-run.log'}")
            time.sleep(0.1)
        yield DemoStack(ports=ports, workdir=workdir, keys=read_keys(data_dir / "demo-keys.env"))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def refresh_outputs(paths: list[Path], *, warmup: float = 0.0) -> list[str]:
    """Run every runnable block of ``paths`` against a fresh stack; rewrite their output blocks.

    Returns ``file:line`` of the blocks that failed (their output is left as it was).
    """
    failed = []
    with tempfile.TemporaryDirectory(prefix="iotedge-docs-") as tmp, demo_stack(Path(tmp)) as stack:
        time.sleep(warmup)  # let the edge poll a few times, so statistics look lived-in
        for path in paths:
            blocks = find_blocks(path)
            replacements: list[tuple[Block, str]] = []
            for block in blocks:
                if not block.runnable:
                    continue
                result = run_block(block, stack)
                target = output_block_of(blocks, block)
                if result.returncode != 0 or not result.stdout.strip():
                    failed.append(block.where)
                    continue
                if target is not None:
                    shown = format_output(rewrite_addresses(result.stdout, stack.ports, reverse=True))
                    replacements.append((target, shown))
            lines = path.read_text().split("\n")
            for target, shown in reversed(replacements):
                lines[target.start + 1 : target.end] = [
                    (target.indent + line) if line else "" for line in shown.split("\n")
                ]
            path.write_text("\n".join(lines))
    return failed
