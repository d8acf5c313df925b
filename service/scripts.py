"""The Lua scripts of ``service/lua/*.lua``: one registry object per script.

A ``Script`` holds its source, its SHA1 and the order of its KEYS, read from the
script's own header (``-- KEYS[1] = … c:{b}:v``) and matched to the bucket's key
names of ``service.keys``: callers pass a bucket, never a hand-ordered key list, so
KEYS cannot drift from what the script expects. A script whose header names
``rl:{id}`` is ``per_key``: it runs on one API key's rate-limit state instead.
A new script is one ``.lua`` file with that header and one line below.

Callers run them with EVALSHA and send the source again on NOSCRIPT (a node that
restarted, or a replica promoted after failover): safe, since NOSCRIPT means the
script did not run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from service.keys import BucketKeys, key_role

_HEADER_KEY = re.compile(r"^-- KEYS\[(\d+)\]\s*=.*?(c:\{b\}:\w+)", re.M)
_HEADER_RATE_KEY = re.compile(r"^-- KEYS\[1\]\s*=.*?rl:\{id\}", re.M)


def lua_source(name: str) -> str:
    return resources.files("service").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str  # EVALSHA's handle: SHA1 of the source
    roles: tuple[int, ...]  # position in BucketKeys of KEYS[1], KEYS[2], …; () for per_key
    per_key: bool = False  # its one key is an API key's ``rl:{id}`` (keys.rate_key)

    @classmethod
    def load(cls, name: str) -> Script:
        source = lua_source(name)
        sha = hashlib.sha1(source.encode()).hexdigest()
        if _HEADER_RATE_KEY.search(source):
            if _HEADER_KEY.search(source) or "KEYS[2]" in source:
                raise ValueError(f"{name}.lua: a script on rl:{{id}} touches that key only")
            return cls(name, source, sha, (), per_key=True)
        named = {int(i): key_role(key) for i, key in _HEADER_KEY.findall(source)}
        if not named or sorted(named) != list(range(1, len(named) + 1)):
            raise ValueError(f"{name}.lua: the header must name KEYS[1..n] as c:{{b}}:<suffix>")
        return cls(name, source, sha, tuple(named[i] for i in sorted(named)))

    def keys(self, bucket: BucketKeys) -> tuple[str, ...]:
        """The bucket's key names in this script's KEYS order."""
        return tuple(bucket[i] for i in self.roles)


INCR = Script.load("incr")  # increment and mark dirty (the API's hot path)
INCR_MANY = Script.load("incr_many")  # the batch endpoint: many buckets of one node
GET_MANY = Script.load("get_many")  # the batch read: many buckets of one node
INFO = Script.load("info")  # GET …/info: a counter's value, epoch and dirty mark
SET = Script.load("set")  # PUT / DELETE: a new value with a raised epoch
SNAPSHOT = Script.load("snapshot")  # the flusher: read a window of dirty counters
CLEAR_DIRTY = Script.load("clear_dirty")  # the flusher: clear marks after a commit
SETTLE = Script.load("settle")  # the flusher: add what a new lineage lacks, close it
REOPEN = Script.load("reopen")  # repair: start a new lineage so the flusher settles it
RATELIMIT = Script.load("ratelimit")  # the API: an API key's GCRA limit, on rl:{id}
