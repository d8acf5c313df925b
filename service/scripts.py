"""Lua scripts from ``service/lua/*.lua``, registered once per Redis client.

``register_script`` runs EVALSHA and reloads the script by itself on NOSCRIPT
(a node that restarted or a replica promoted after failover), which is safe to
repeat because NOSCRIPT means the script did not run.
"""

from __future__ import annotations

from importlib import resources
from typing import Any


def lua_source(name: str) -> str:
    return resources.files("service").joinpath("lua", f"{name}.lua").read_text("utf-8")


def register(client: Any, name: str) -> Any:
    """A callable ``script(keys=[...], args=[...])`` bound to ``client``."""
    return client.register_script(lua_source(name))
