"""Named SQL statements: how a ``.sql`` file splits, and every file the service loads."""

from __future__ import annotations

import pytest

from service import queries

TEXT = """-- A file's preamble is no statement.

-- name: first
-- Why first is so: 100% of its comment lines are dropped (psycopg reads % in them).
SELECT 1
FROM t;  -- a trailing comment stays

-- name: second
INSERT INTO t VALUES (%s);
"""


def test_a_file_splits_into_its_named_statements_without_comment_lines() -> None:
    assert queries.parse(TEXT) == {
        "first": "SELECT 1\nFROM t;  -- a trailing comment stays",
        "second": "INSERT INTO t VALUES (%s)",
    }


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'first' is named twice"):
        queries.parse("-- name: first\nSELECT 1;\n-- name: first\nSELECT 2;\n")


def test_a_name_with_no_statement_is_refused() -> None:
    with pytest.raises(ValueError, match="'empty' is empty"):
        queries.parse("-- name: empty\n-- only a comment\n-- name: next\nSELECT 1;\n")


@pytest.mark.parametrize(
    ("package", "filename", "names"),
    [
        ("service.flusher", "flush.sql", {"upsert", "take_over", "settle_amounts"}),
        ("service.api", "counters.sql", {"read_counter", "read_info", "ping"}),
        ("service", "apikeys.sql", {"create", "list", "active", "active_among"}),
        ("service", "migrate.sql", {"lock", "create_history", "layout", "record"}),
        ("service.ops", "rebucket.sql", {"copy_rows_out", "copy_rows_back", "record_buckets"}),
    ],
)
def test_the_services_files_load_with_no_placeholder_in_a_comment(
    package: str, filename: str, names: set[str]
) -> None:
    statements = queries.load(package, filename)
    assert names <= set(statements)
    for statement in statements.values():
        assert not any(line.lstrip().startswith("--") for line in statement.splitlines())
