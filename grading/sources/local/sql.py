"""Quoting for the SQL text the export loader builds (DuckDB table functions take file paths and
column lists as SQL): every identifier and literal goes through one of these two."""

from __future__ import annotations


def sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
