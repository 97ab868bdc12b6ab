"""Fixtures of the host agent's tests: journal backends (SQLite in a temp dir, a private PostgreSQL server)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from postgres import PostgresServer

from wirebook.host.journal import JournalConfig

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session (unix socket in a temp dir); fails if not installed."""
    server = PostgresServer()  # PostgresMissing here fails every test that asked for it, by design
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass
class JournalBackend:
    """A fresh, empty journal location of one backend, and a raw connection to it (outside the journal)."""

    name: str
    config: JournalConfig

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement directly on the database (committed); its rows if it returns any."""
        if self.name == "sqlite":
            with sqlite3.connect(self.config.path) as connection:
                return connection.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(self.config.conninfo, autocommit=True) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def with_(self, **changes: Any) -> JournalConfig:
        return self.config.model_copy(update=changes)


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_backend(request: pytest.FixtureRequest, tmp_path) -> JournalBackend:
    """Each journal test runs on both backends, each time on a database of its own."""
    if request.param == "sqlite":
        return JournalBackend("sqlite", JournalConfig(backend="sqlite", path=tmp_path / "journal.sqlite3"))
    server: PostgresServer = request.getfixturevalue("postgres_server")
    conninfo = server.create_database(f"journal_{next(_databases)}")
    return JournalBackend("postgresql", JournalConfig(backend="postgresql", conninfo=conninfo))
