"""Named SQL statements read from ``.sql`` files, so SQL is reviewed as SQL.

A file holds several statements, each starting at a ``-- name: <name>`` line; the
comment lines under it say why the statement is written so. Whole-line comments are
dropped from the statement sent (psycopg would read a ``%`` in them as a
placeholder), as is a trailing ``;``. Files sit beside the module that runs them
and are read once, at import.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: ([a-z_]+)[ \t]*$", re.M)
_COMMENT_LINE = re.compile(r"^[ \t]*--.*\n?", re.M)


def parse(text: str) -> dict[str, str]:
    """``{name: statement}`` of a named-statement file's text."""
    parts = _NAME.split(text)
    statements: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in statements:
            raise ValueError(f"SQL statement {name!r} is named twice")
        statement = _COMMENT_LINE.sub("", body).strip().rstrip(";").rstrip()
        if not statement:
            raise ValueError(f"SQL statement {name!r} is empty")
        statements[name] = statement
    return statements


def load(package: str, filename: str) -> dict[str, str]:
    """``parse`` of ``filename`` in ``package`` (an installed package's data file)."""
    return parse(resources.files(package).joinpath(filename).read_text("utf-8"))
