"""Every shell example marked runnable in README.md and docs/*.md works against real processes.

Convention (see CONTRIBUTING.md): a block fenced as ```sh runnable is written as a reader
types it in the repository root while `make run` serves on the default addresses, after
`source data/demo-keys.env`. The test starts `iotedge run` on free ports with its data in a
work directory, rewrites 127.0.0.1:8000/5000/8001 to those ports, exports the demo keys
($CLIENT_1_KEY ... $CLOUD_KEY) and runs each block with bash (errexit, pipefail).
When a ``text output`` block follows, what the block prints must match it under the
placeholders of ``tools.docs_gen.examples.PLACEHOLDERS`` (``text output varies``: not compared).
docs/fr/ repeats the English blocks; tests/docs/test_translation.py checks that they agree.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tools.docs_gen.examples import (
    DemoStack,
    find_blocks,
    format_output,
    normalise,
    output_block_of,
    prepare_workdir,
    read_keys,
    rewrite_addresses,
    run_block,
)

from tests.conftest import wait_for
from tests.procs import free_port, start_iotedge

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [block for path in DOC_FILES for block in find_blocks(path) if block.runnable]
SHOWN = {
    block.where: output_block_of(find_blocks(block.path), block) for block in BLOCKS
}  # the output block after each runnable block, if any


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, logs_dir: Path) -> Iterator[DemoStack]:
    """`iotedge run` on free ports, polling every second, its data in a fresh work directory."""
    workdir = tmp_path_factory.mktemp("examples")
    data_dir = prepare_workdir(workdir)
    ports = {"sim": free_port(), "edge": free_port(), "metrics": free_port()}
    args = [
        "run",
        "--sim-port", str(ports["sim"]),
        "--metrics-port", str(ports["metrics"]),
        "--data-dir", str(data_dir),
        "--poll-interval", "1s",
    ]  # fmt: skip
    with start_iotedge(args, log_dir=logs_dir, port=ports["edge"], health_path="/readyz", timeout=30):
        # The CPU gauge is a rate: it has a value from the container sampler's second sample on.
        metrics = f"http://127.0.0.1:{ports['metrics']}/metrics"
        wait_for(lambda: "\nedge_cpu_usage " in httpx.get(metrics).text, 30, "the edge's CPU gauge")
        yield DemoStack(ports=ports, workdir=workdir, keys=read_keys(data_dir / "demo-keys.env"))


def test_docs_have_runnable_examples():
    """The README and the guide both carry runnable examples (the marker was not lost)."""
    files = {block.path.name for block in BLOCKS}
    assert {"README.md", "guide.md"} <= files


@pytest.mark.integration
@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_runnable_example(block, demo):
    """The example exits 0, prints something, and prints what its output block shows."""
    result = run_block(block, demo, timeout=30)  # a bound for a loaded machine, not a speed claim
    assert result.returncode == 0, (
        f"{block.where} exited {result.returncode}:\n{block.code}\n---\n{result.stdout}"
    )
    assert result.stdout.strip(), f"{block.where} printed nothing:\n{block.code}"
    shown = SHOWN[block.where]
    if shown is None or "varies" in shown.info.split():
        return
    printed = format_output(rewrite_addresses(result.stdout, demo.ports, reverse=True))
    assert normalise(printed) == normalise(shown.code), (
        f"{block.where}: the shown output is not what the block prints "
        "(refresh it with `make docs-examples`, or fix the code):\n"
        f"--- shown\n{shown.code}\n--- printed\n{printed}"
    )
