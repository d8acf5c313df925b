"""Counter stores with one deliberate bug each, for ``broken_app``. Test-only.

Each bug is one the load-test checker must catch by a different invariant:

  race     read, pause, write: concurrent increments return the same value (atomicity)
  lost     every 7th increment is dropped, yet every POST returns a new, distinct value
           (count: final < start + acknowledged)
  stale    GETs come from a replica that trails the writes by ``LAG`` seconds (reads)
  sharded  each connection increments its own shard and is answered with that shard's
           count; a GET sums the shards. One connection per process sees a perfect
           counter: only values merged across processes repeat (atomicity, distributed)
  atomic   no bug (the body-fault modes of ``broken_app`` use it)

A counter is ``(tenant, namespace)``; ``conn`` names the client connection.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict

Key = tuple[str, str]
RACE_WINDOW = 0.002  # seconds between the read and the write: where increments get lost
LOSE_EVERY = 7
LAG = 0.05  # seconds the stale replica trails


class AtomicStore:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[Key, int] = defaultdict(int)
        self.stats: dict[str, int] = defaultdict(int)

    def increment(self, key: Key, conn: str) -> int:
        with self.lock:
            self.values[key] += 1
            return self.values[key]

    def get(self, key: Key) -> int:
        with self.lock:
            return self.values[key]

    def current(self, key: Key) -> int:
        """What the store holds, for the checker's own reads (only ``stale`` serves GETs less)."""
        return self.get(key)


class RaceStore(AtomicStore):
    def increment(self, key: Key, conn: str) -> int:
        """The bug: read, pause, write. Two threads can both read n and write n+1."""
        value = self.get(key)
        time.sleep(RACE_WINDOW)
        with self.lock:
            self.values[key] = value + 1
        return value + 1


class LostStore(AtomicStore):
    def __init__(self) -> None:
        super().__init__()
        self.issued: dict[Key, int] = defaultdict(int)

    def increment(self, key: Key, conn: str) -> int:
        """The bug: the answer comes from a sequence; every 7th write never reaches the value."""
        with self.lock:
            self.issued[key] += 1
            if self.issued[key] % LOSE_EVERY:
                self.values[key] += 1
            else:
                self.stats["lost"] += 1
            return self.issued[key]


class StaleStore(AtomicStore):
    def __init__(self) -> None:
        super().__init__()
        self.history: dict[Key, tuple[list[float], list[int]]] = defaultdict(lambda: ([], []))

    def increment(self, key: Key, conn: str) -> int:
        with self.lock:
            self.values[key] += 1
            times, values = self.history[key]
            times.append(time.monotonic())
            values.append(self.values[key])
            return self.values[key]

    def current(self, key: Key) -> int:
        return AtomicStore.get(self, key)

    def get(self, key: Key) -> int:
        """The bug: the value as it was ``LAG`` seconds ago."""
        with self.lock:
            times, values = self.history[key]
            i = bisect.bisect_right(times, time.monotonic() - LAG)
            seen = values[i - 1] if i else 0
            self.stats["stale_reads"] += seen < self.values[key]
            return seen


class ShardedStore(AtomicStore):
    def __init__(self) -> None:
        super().__init__()
        self.shards: dict[Key, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def increment(self, key: Key, conn: str) -> int:
        """The bug: the answer is the connection's shard count, not the counter's."""
        with self.lock:
            self.shards[key][conn] += 1
            self.stats["shards"] = sum(len(s) for s in self.shards.values())
            return self.shards[key][conn]

    def get(self, key: Key) -> int:
        with self.lock:
            return sum(self.shards[key].values())


STORES = {
    "race": RaceStore,
    "lost": LostStore,
    "stale": StaleStore,
    "sharded": ShardedStore,
    "atomic": AtomicStore,
}
