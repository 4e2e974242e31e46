"""Fixtures for every test tier: the real Kafka broker and PostgreSQL that `make test` starts.

Integration tests ask for `kafka` or `postgres`. When those servers do not answer, the tests fail under
`make test` (LASTMILE_REQUIRE_INFRA=1: a skipped integration test proves nothing) and are skipped, saying
why, when a developer runs a quick subset without them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lastmile.common.testing import listen_ports

ROOT = Path(__file__).parent
KAFKA = os.environ.get("LASTMILE_TEST_KAFKA", "127.0.0.1:19092")
PG_HOST = os.environ.get("LASTMILE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("LASTMILE_TEST_PG_PORT", "55432"))
SHARED = Path(os.environ.get("LASTMILE_SHARED", ROOT.parent / "shared"))


def pytest_report_header() -> list[str]:
    required = "required" if os.environ.get("LASTMILE_REQUIRE_INFRA") == "1" else "optional"
    return [f"infrastructure ({required}): Kafka at {KAFKA}, PostgreSQL at {PG_HOST}:{PG_PORT}"]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _need(what: str, host: str, port: int) -> None:
    if _answers(host, port):
        return
    message = f"{what} does not answer on {host}:{port}; `make test` (or `make infra-up`) starts it"
    if os.environ.get("LASTMILE_REQUIRE_INFRA") == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class KafkaInfo:
    bootstrap: str
    prefix: str  # a topic namespace of this test's own, so tests never see each other's events


@pytest.fixture
def kafka() -> Iterator[KafkaInfo]:
    host, port = KAFKA.rsplit(":", 1)
    _need("Kafka", host, int(port))
    info = KafkaInfo(KAFKA, f"t{secrets.token_hex(4)}.")
    yield info
    # Every test creates its topics under its own prefix; deleting them keeps a long-lived broker small (a
    # developer's broker that ran thousands of tests' topics ran out of heap).
    worker = threading.Thread(target=asyncio.run, args=(_delete_topics(info),), daemon=True)
    worker.start()
    worker.join(timeout=30)


async def _delete_topics(info: KafkaInfo) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=info.bootstrap, client_id="test-cleanup")
    try:
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(info.prefix)]
        if mine:
            await admin.delete_topics(mine)
    except Exception:  # noqa: S110  (cleanup is best effort; a broker a test killed may not answer)
        pass
    finally:
        await admin.close()


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://lastmile@{self.host}:{self.port}/{database}"


CreateDatabase = Callable[[str], Awaitable[str]]


@pytest.fixture
async def postgres() -> AsyncIterator[CreateDatabase]:
    """A factory of fresh databases, dropped afterwards: `url = await postgres("planner")`."""
    _need("PostgreSQL", PG_HOST, PG_PORT)
    import asyncpg

    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="lastmile", database="postgres")
    made: list[str] = []

    async def create(label: str) -> str:
        name = f"t_{label.replace('-', '_')}_{secrets.token_hex(4)}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return Postgres(PG_HOST, PG_PORT).url(name)

    try:
        yield create
    finally:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def shared_data() -> Path:
    """`../shared` (or LASTMILE_SHARED): the design's data; tests say plainly when it is absent."""
    if not SHARED.exists():
        pytest.fail(f"shared data not found at {SHARED}; set LASTMILE_SHARED to the folder holding it")
    return SHARED


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A port free now and not handed out before in this run (`lastmile.common.testing.listen_ports`)."""
    return listen_ports
