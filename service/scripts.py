"""Lua scripts from ``service/lua/*.lua``, read from the installed package.

Callers run them with EVALSHA and send the source again on NOSCRIPT (a node that
restarted, or a replica promoted after failover): safe, since NOSCRIPT means the
script did not run.
"""

from __future__ import annotations

from importlib import resources


def lua_source(name: str) -> str:
    return resources.files("service").joinpath("lua", f"{name}.lua").read_text("utf-8")
