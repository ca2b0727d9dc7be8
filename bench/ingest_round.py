"""One round of the ingest scenario, in a process of its own (``store_bench.scenario_ingest``).

``python bench/ingest_round.py BATCH READINGS SEED`` writes READINGS readings in batches of
BATCH into a fresh store and prints one JSON object: readings inserted, seconds spent in
``insert_readings`` (wall and this process's CPU) and each batch's milliseconds. Run with
``PYTHONPATH`` at another commit's ``src/`` it measures that commit's store; it uses only
what every release has
(``Store``, ``insert_readings``, ``count_readings``, ``close``).
"""

import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from iotedge.edge.normalise import Reading
from iotedge.edge.store import Store
from iotedge.specs import DEVICE_TYPES

__all__ = ["fleet_batches", "ingest_round"]

_STEP_S = 5.0  # the production poll interval: one reading per metric every 5 s
_TYPES = tuple(DEVICE_TYPES)


def fleet_batches(batch: int, total: int, rng: random.Random) -> Iterator[list[Reading]]:
    """Batches shaped like poll cycles: objects with two metrics each, 5 s apart."""
    objects_per_batch = max(1, batch // 2)
    start = 1.8e9
    for number in range(max(1, total // batch)):
        ts = start + number * _STEP_S
        readings: list[Reading] = []
        for index in range(objects_per_batch):
            kind = DEVICE_TYPES[_TYPES[index % len(_TYPES)]]
            object_id = f"device_{index + 1}"
            client = f"client_{index // 10 + 1}"
            for metric in kind.metrics:
                readings.append(Reading(object_id, client, metric, ts, round(rng.uniform(10, 90), 2)))
        yield readings[:batch]


def ingest_round(batch: int, total: int, seed: int) -> dict[str, object]:
    """Insert the round's batches into a fresh store on disk; time each ``insert_readings``."""
    with tempfile.TemporaryDirectory(prefix="iotedge-ingest-") as tmp:
        store = Store(Path(tmp) / "edge.sqlite3")
        try:
            elapsed = 0.0
            cpu = 0.0
            inserted = 0
            batch_ms: list[float] = []
            for readings in fleet_batches(batch, total, random.Random(seed)):
                started, cpu_started = time.perf_counter(), time.process_time()
                stored = store.insert_readings(readings)
                took = time.perf_counter() - started
                cpu += time.process_time() - cpu_started
                if stored != len(readings):
                    raise RuntimeError(f"stored {stored} of {len(readings)} new readings")
                elapsed += took
                inserted += stored
                batch_ms.append(took * 1000)
            if store.count_readings() != inserted:
                raise RuntimeError("the store does not hold what was inserted")
        finally:
            store.close()
    return {"inserted": inserted, "elapsed_s": elapsed, "cpu_s": cpu, "batch_ms": batch_ms}


if __name__ == "__main__":
    size, readings_total, round_seed = (int(arg) for arg in sys.argv[1:4])
    print(json.dumps(ingest_round(size, readings_total, round_seed)))
