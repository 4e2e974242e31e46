"""The distributed mode on one machine: each service its own process, on Kafka and PostgreSQL.

Used by the end-to-end and fault tests and by `make demo MODE=distributed`; what docker-compose and Kubernetes
run, minus the containers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

MODULES = {
    "order-intake": "lastmile.order_intake",
    "planner": "lastmile.planner",
    "tracker": "lastmile.tracker",
    "notifier": "lastmile.notifier",
}


@dataclass
class Stack:
    """Four service processes sharing one broker (under a topic prefix) and one PostgreSQL server."""

    kafka_bootstrap: str
    databases: dict[str, str]  # service → SQLAlchemy URL
    ports: dict[str, int]
    ops_token: str
    logs: Path
    topic_prefix: str = ""
    host: str = "127.0.0.1"
    osmand_port: int = 0  # the tracker's OsmAnd listener; 0: a free port of the system's choosing
    extra_env: dict[str, str] = field(default_factory=dict)
    twilio_token: str = field(default_factory=lambda: secrets.token_hex(16))  # signs inbound SMS (STOP)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _log_files: dict[str, IO[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    def env(self, service: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LASTMILE_")}
        tracker = f"http://{self.host}:{self.ports.get('tracker', 8003)}"
        env.update(
            {
                "LASTMILE_BUS": "kafka",
                "LASTMILE_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
                "LASTMILE_KAFKA_TOPIC_PREFIX": self.topic_prefix,
                "LASTMILE_DATABASE_URL": self.databases[service],
                "LASTMILE_HOST": self.host,
                "LASTMILE_PORT": str(self.ports[service]),
                "LASTMILE_OSMAND_PORT": str(self.osmand_port),
                "LASTMILE_OPS_TOKEN": self.ops_token,
                "LASTMILE_PUBLIC_URL": tracker,
                "LASTMILE_TRACKING_BASE_URL": tracker + "/track/",
                "LASTMILE_FILE_OUTBOX_DIR": str(self.logs / "outbox"),
                "LASTMILE_LOG_FORMAT": "json",
                "LASTMILE_TWILIO_AUTH_TOKEN": self.twilio_token,
                **self.extra_env,
            }
        )
        return env

    def start(self, service: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self._log_files.get(service) or open(self.logs / f"{service}.log", "ab")  # noqa: SIM115
        self._log_files[service] = log
        self.processes[service] = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", MODULES[service]],
            env=self.env(service),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def start_all(self, timeout: float = 90.0) -> None:
        for service in MODULES:
            self.start(service)
        await self.wait_ready(*MODULES, timeout=timeout)

    async def wait_ready(self, *services: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=3) as http:
            for service in services:
                while True:
                    process = self.processes[service]
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"{service} exited with {process.returncode}; see {self.logs}/{service}.log"
                        )
                    try:
                        if (await http.get(self.url(service) + "/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{service} not ready after {timeout} s; see {self.logs}/{service}.log"
                        )
                    await asyncio.sleep(0.2)

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[service]
        if process.poll() is None:
            process.send_signal(sig)
            process.wait(timeout=30)

    def stop_all(self) -> None:
        for service in list(self.processes):
            process = self.processes[service]
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._log_files.values():
            log.close()
        self._log_files.clear()
