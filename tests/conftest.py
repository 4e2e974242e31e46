"""Fixtures for the cross-service tiers: the four services as processes on the real Kafka and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lastmile.common.testing import ANY_HOUR, listen_ports
from lastmile.sim.distributed import MODULES, Stack


@pytest.fixture
async def stack(kafka: Any, postgres: Any, free_port: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    databases = {service: await postgres(service) for service in MODULES}
    ports = {service: free_port() for service in MODULES}
    running = Stack(
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=kafka.prefix,
        databases=databases,
        ports=ports,
        ops_token="lm_ops_" + secrets.token_urlsafe(24),
        logs=tmp_path / "logs",
        extra_env=ANY_HOUR,
    )
    try:
        await running.start_all()
        yield running
    finally:
        running.stop_all()


ROOT = Path(__file__).resolve().parent.parent


@dataclass
class OwnInfra:
    """A Kafka broker and a PostgreSQL server of this test's own, on their own ports, so that killing them
    leaves every other test's servers alone."""

    home: Path
    kafka_port: int
    pg_port: int

    def _run(self, script: str, *args: str) -> None:
        env = {
            **os.environ,
            "KAFKA_HOME": str(self.home / "kafka"),
            "KAFKA_PORT": str(self.kafka_port),
            "PG_HOME": str(self.home / "pg"),
            "PG_PORT": str(self.pg_port),
        }
        done = subprocess.run([str(ROOT / script), *args], env=env, capture_output=True, timeout=180)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise subprocess.CalledProcessError(done.returncode, f"{script} {' '.join(args)}: {output}")

    def kafka(self, action: str) -> None:
        self._run("tools/kafka/kafka.sh", action)

    def pg(self, action: str) -> None:
        self._run("tools/pg/pg.sh", action)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    async def database(self, name: str) -> str:
        import asyncpg

        admin = await asyncpg.connect(
            host="127.0.0.1", port=self.pg_port, user="lastmile", database="postgres"
        )
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return f"postgresql+asyncpg://lastmile@127.0.0.1:{self.pg_port}/{name}"


@contextlib.contextmanager
def _own_infra() -> Iterator[OwnInfra]:
    home = Path(tempfile.mkdtemp(prefix="lastmile-infra-", dir="/tmp"))
    infra = OwnInfra(home, listen_ports(2), listen_ports())  # the broker, then its controller; PostgreSQL
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
    try:
        infra.kafka("start")
        infra.pg("start")
        yield infra
    finally:
        for stop in (lambda: infra.kafka("stop"), lambda: infra.pg("stop")):
            with contextlib.suppress(subprocess.SubprocessError):
                stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def own_infra(kafka: Any, postgres: Any) -> Iterator[OwnInfra]:
    # `kafka` and `postgres` first: they fail (or skip) plainly when the machine lacks the servers' software.
    with _own_infra() as infra:
        yield infra


@pytest.fixture(scope="module")
def own_infra_module() -> Iterator[OwnInfra]:
    """`own_infra` shared by a module's tests (a broker costs 10-20 s to start): tests restart it, never
    re-create it, and leave it running for the next one."""
    if shutil.which("java") is None or not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        # Never a skip: a fault test that did not run proves nothing, so a machine without the servers fails.
        pytest.fail("the fault tests need Java and PostgreSQL; `make system-deps` installs them")
    with _own_infra() as infra:
        yield infra
