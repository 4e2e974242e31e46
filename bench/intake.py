"""Order intake under load: one service process on the real PostgreSQL and Kafka, driven over HTTP.

`make bench-intake` (or `python bench/intake.py --help`). Phases, each after a warm-up:
  single   POST /v1/orders at a fixed offered rate (open loop: latency counts from the scheduled send time,
           so a stalled server is not hidden by a client that waits for it), then as fast as N connections go;
  batch    POST /v1/orders/batch with 1,000 orders per request, as fast as N connections go.
Every request carries a fresh Idempotency-Key and a unique reference, as a merchant's system would send.
After each phase it waits for the outbox relay to publish everything accepted (orders.v1 on Kafka) and reports
how long that took. With --profile it then repeats each phase under py-spy and prints where the time went.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OPS_TOKEN = "lm_ops_bench_" + secrets.token_hex(12)
BATCH = 1000


# ---------------------------------------------------------------------------------------------------------
# A lean keep-alive HTTP/1.1 client: the load generator must cost far less CPU than the server it measures.


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.transport.set_write_buffer_limits(high=4 * 1024 * 1024)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ---------------------------------------------------------------------------------------------------------
# Orders


def order_template(day: str) -> bytes:
    """One order's JSON with a placeholder for its reference (formatting is cheap; json.dumps per order is not)."""
    order = {
        "reference": "@REF@",
        "recipient": {"name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com"},
        "destination": {"lat": 52.5208, "lon": 13.4095, "address_lines": ["Karl-Liebknecht-Str. 1"],
                        "postal_code": "10178", "city": "Berlin", "country": "DE"},
        "time_windows": [{"start": f"{day}T10:00:00+01:00", "end": f"{day}T18:00:00+01:00"}],
        "parcels": [{"count": 1, "weight_kg": 2.5}],
        "skills": ["id_check"],
        "metadata": {"shop_order": "SO-77"},
    }  # fmt: skip
    return json.dumps(order, separators=(",", ":")).encode()


@dataclass
class Refs:
    prefix: str = field(default_factory=lambda: secrets.token_hex(3))
    n: int = 0

    def next(self) -> bytes:
        self.n += 1
        return f"{self.prefix}-{self.n}".encode()


# ---------------------------------------------------------------------------------------------------------
# Results


@dataclass
class Phase:
    name: str
    requests: int = 0
    orders: int = 0
    errors: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    drain_s: float | None = None
    offered_rate: float | None = None
    service_cpu_s: float = 0.0  # the service process's CPU seconds (user + system) over the measured window
    db_cpu_s: float = 0.0  # its PostgreSQL backends' CPU seconds, from the warm-up's start to the drain's end
    db_orders: int = 0  # orders accepted over that same span
    backlog_at_end: int = 0  # events accepted but not yet published when the phase ended
    whole_cpu_s: float = 0.0  # the service's CPU seconds over that span (its relay's catching up included)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else float("nan")

        return {
            "phase": self.name,
            "offered_per_s": self.offered_rate,
            "requests": self.requests,
            "orders": self.orders,
            "orders_per_s": round(self.orders / self.seconds, 1) if self.seconds else 0,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1000, 2) if lat else float("nan"),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else float("nan"),
            "errors": dict(self.errors),
            "relay_drain_s": self.drain_s,
            "outbox_backlog_at_end": self.backlog_at_end,
            "service_cpu_share": round(self.service_cpu_s / self.seconds, 2) if self.seconds else None,
            "service_cpu_ms_per_order": round(1000 * self.service_cpu_s / self.orders, 3)
            if self.orders
            else None,
            "db_cpu_ms_per_order": round(1000 * self.db_cpu_s / self.db_orders, 3)
            if self.db_orders
            else None,
            "service_cpu_ms_per_order_drained": round(1000 * self.whole_cpu_s / self.db_orders, 3)
            if self.db_orders
            else None,
        }


# ---------------------------------------------------------------------------------------------------------
# The service under test


@dataclass
class Target:
    host: str
    port: int
    merchant_headers: dict[str, str]
    database_url: str
    process: subprocess.Popen[bytes]


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_service(args: argparse.Namespace, database_url: str, prefix: str, log: Path) -> Target:
    import httpx

    from lastmile.common import events as ev
    from lastmile.common.bus import KafkaBus
    from lastmile.common.testing import publish

    bus = KafkaBus(args.kafka, client_id="bench", topic_prefix=prefix)
    await bus.start()
    depot = ev.DepotUpserted(depot_id="dep_bench", name="Berlin", location=ev.GeoPoint(lat=52.52, lon=13.40),
                             timezone="Europe/Berlin", service_radius_km=20)  # fmt: skip
    await publish(bus, depot)
    await bus.stop()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASTMILE_")}
    env.update(
        LASTMILE_BUS="kafka", LASTMILE_KAFKA_BOOTSTRAP_SERVERS=args.kafka, LASTMILE_KAFKA_TOPIC_PREFIX=prefix,
        LASTMILE_DATABASE_URL=database_url, LASTMILE_PORT=str(port), LASTMILE_OPS_TOKEN=OPS_TOKEN,
        LASTMILE_LOG_LEVEL="WARNING", LASTMILE_RATE_LIMIT_PER_SECOND="1000000", LASTMILE_RATE_LIMIT_BURST="1000000",
        LASTMILE_DATABASE_POOL_SIZE=str(args.pool),
    )  # fmt: skip
    process = spawn([sys.executable, "-m", "lastmile.order_intake"], env, log)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"order-intake exited; see {log}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        ops = {"Authorization": f"Bearer {OPS_TOKEN}"}
        merchant = (await http.post("/v1/merchants", json={"name": "Bench"}, headers=ops)).json()
    headers = {"Authorization": f"Bearer {merchant['api_key']}", "Content-Type": "application/json"}
    return Target("127.0.0.1", port, headers, database_url, process)


async def row_count(database_url: str, table: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 (our own table names)
    finally:
        await conn.close()


async def outbox_backlog(database_url: str) -> int:
    return await row_count(database_url, "outbox")


async def order_count(database_url: str) -> int:
    return await row_count(database_url, "orders")


async def backend_pids(database_url: str) -> list[int]:
    """The PostgreSQL backends serving the benchmark's database (the service's pool, its relay)."""
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


def backends_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a backend that has gone
            total += cpu_seconds(pid)
    return total


async def drain(target: Target, timeout: float = 300) -> float:
    """Seconds until the relay has published every accepted order's event to Kafka."""
    started = time.perf_counter()
    while await outbox_backlog(target.database_url) > 0:
        if time.perf_counter() - started > timeout:
            raise TimeoutError("the outbox did not drain")
        await asyncio.sleep(0.1)
    return round(time.perf_counter() - started, 2)


# ---------------------------------------------------------------------------------------------------------
# Load


def single_body(template: bytes, refs: Refs) -> bytes:
    return template.replace(b"@REF@", refs.next())


def batch_body(template: bytes, refs: Refs) -> bytes:
    return b'{"orders":[' + b",".join(template.replace(b"@REF@", refs.next()) for _ in range(BATCH)) + b"]}"


async def closed_loop(target: Target, phase: Phase, path: str, bodies: Callable[[], bytes], per_request: int,
                      connections: int, seconds: float, warmup: float) -> None:  # fmt: skip
    """`connections` clients, each sending its next request as soon as the last is answered."""
    measuring_from = time.perf_counter() + warmup
    until = measuring_from + seconds

    async def client() -> None:
        conn = Connection(target.host, target.port)
        try:
            while (now := time.perf_counter()) < until:
                headers = {**target.merchant_headers, "Idempotency-Key": secrets.token_hex(12)}
                status, _ = await conn.request("POST", path, headers, bodies())
                done = time.perf_counter()
                if now >= measuring_from:
                    phase.requests += 1
                    phase.latencies.append(done - now)
                    if status in (200, 201):
                        phase.orders += per_request
                    else:
                        phase.errors[status] += 1
        finally:
            conn.close()

    async def meter() -> None:
        await asyncio.sleep(max(0.0, measuring_from - time.perf_counter()))
        start = cpu_seconds(target.process.pid)
        await asyncio.sleep(max(0.0, until - time.perf_counter()))
        phase.service_cpu_s = cpu_seconds(target.process.pid) - start

    await asyncio.gather(meter(), *(client() for _ in range(connections)))
    phase.seconds = seconds


async def open_loop(target: Target, phase: Phase, template: bytes, refs: Refs, rate: float, seconds: float,
                    warmup: float, max_connections: int = 256) -> None:  # fmt: skip
    """Requests sent at `rate` per second whatever the answers; latency counts from the scheduled time."""
    idle: list[Connection] = []
    started = time.perf_counter()
    measuring_from = started + warmup
    total = int(rate * (seconds + warmup))
    in_flight: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        conn = idle.pop() if idle else Connection(target.host, target.port)
        headers = {**target.merchant_headers, "Idempotency-Key": secrets.token_hex(12)}
        status, _ = await conn.request("POST", "/v1/orders", headers, single_body(template, refs))
        idle.append(conn)
        if scheduled >= measuring_from:
            phase.requests += 1
            phase.latencies.append(time.perf_counter() - scheduled)
            if status == 201:
                phase.orders += 1
            else:
                phase.errors[status] += 1

    cpu_start: float | None = None
    for i in range(total):
        scheduled = started + i / rate
        if cpu_start is None and scheduled >= measuring_from:
            cpu_start = cpu_seconds(target.process.pid)
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_connections:
            phase.errors[-1] += 1  # the client's own limit: counted, never hidden
            continue
        task = asyncio.create_task(one(scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    phase.service_cpu_s = cpu_seconds(target.process.pid) - (cpu_start or 0.0)
    await asyncio.gather(*in_flight)
    for conn in idle:
        conn.close()
    phase.seconds = seconds
    phase.offered_rate = rate


# ---------------------------------------------------------------------------------------------------------
# Profiling


def summarise_profile(raw: Path, top: int = 25) -> list[str]:
    """py-spy's collapsed stacks → share of samples per area (by the innermost frame's package) and per function."""
    by_area: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        by_function[leaf] += count
        by_area[_area(leaf)] += count
        for name in {_lastmile_function(f) for f in frames if any(p in f for p in OURS)}:
            inclusive[name] += count
    lines = [f"samples: {total}", "", "| area (innermost frame) | share |", "|---|---|"]
    lines += [f"| {area} | {count / total:.1%} |" for area, count in by_area.most_common(14)]
    lines += ["", "| lastmile function (inclusive) | share |", "|---|---|"]
    lines += [f"| {name} | {count / total:.1%} |" for name, count in inclusive.most_common(14)]
    lines += ["", "| function (self) | share |", "|---|---|"]
    lines += [f"| {name[:110]} | {count / total:.1%} |" for name, count in by_function.most_common(top)]
    return lines


AREAS = (
    ("sqlalchemy", "SQLAlchemy"), ("asyncpg", "asyncpg"), ("aiokafka", "aiokafka"), ("kafka/", "aiokafka"),
    ("pydantic", "pydantic"), ("fastapi", "FastAPI"), ("starlette", "Starlette"), ("uvicorn", "uvicorn"),
    ("httptools", "uvicorn"), ("json/", "json"), ("lastmile/", "lastmile"), ("order_intake/", "lastmile"),
    ("common/", "lastmile"), ("asyncio", "asyncio"),
    ("uvloop", "asyncio"), ("prometheus", "prometheus"), ("greenlet", "SQLAlchemy"), ("uuid", "ids"),
    ("secrets", "ids"), ("hashlib", "auth"), ("zoneinfo", "timezones"),
)  # fmt: skip


def _area(frame: str) -> str:
    for needle, area in AREAS:
        if needle in frame:
            return area
    return "idle" if frame.startswith(("select ", "epoll", "run_forever")) or "(select" in frame else "other"


OURS = ("(order_intake/", "(common/", "lastmile/")


def _lastmile_function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    module = where.split("lastmile/")[-1].split(".py")[0].replace("/", ".")
    return f"{module}.{name}"


async def profiled(pid: int, seconds: float, out: Path, run: Awaitable[None]) -> list[str]:
    spy = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration", str(int(seconds)),
        "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await run
    _, stderr = await spy.communicate()
    if spy.returncode != 0:
        return [f"py-spy failed ({spy.returncode}): {stderr.decode()[-500:]}"]
    return summarise_profile(out)


# ---------------------------------------------------------------------------------------------------------
# Main


async def create_database(args: argparse.Namespace) -> tuple[str, str]:
    import asyncpg

    name = f"bench_intake_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(host=args.pg_host, port=args.pg_port, user="lastmile", database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, f"postgresql+asyncpg://lastmile@{args.pg_host}:{args.pg_port}/{name}"


async def drop_database(args: argparse.Namespace, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(host=args.pg_host, port=args.pg_port, user="lastmile", database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, url = await create_database(args)
    prefix = f"bench{secrets.token_hex(3)}."
    target = await start_service(args, url, prefix, out_dir / "order-intake.log")
    day = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    template, refs = order_template(day), Refs()
    results: dict[str, Any] = {"machine": machine(), "phases": [], "profiles": {}}
    try:
        for attempt in range(100):  # noqa: B007 (named in the error below)  the depot reaches the service through depots.v1
            conn = Connection(target.host, target.port)
            status, _ = await conn.request(
                "POST", "/v1/orders", target.merchant_headers, single_body(template, refs)
            )
            conn.close()
            if status == 201:
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"the service never accepted an order (last status {status}, {attempt} tries)")

        async def phase_single_rate(phase: Phase) -> None:
            await open_loop(target, phase, template, refs, args.rate, args.seconds, args.warmup)

        async def phase_single_max(phase: Phase) -> None:
            await closed_loop(target, phase, "/v1/orders", lambda: single_body(template, refs), 1,
                              args.connections, args.seconds, args.warmup)  # fmt: skip

        async def phase_batch(phase: Phase) -> None:
            bodies = [batch_body(template, refs) for _ in range(int(args.seconds + args.warmup) * 15)]
            await closed_loop(target, phase, "/v1/orders/batch", bodies.pop, BATCH, args.batch_connections,
                              args.seconds, args.warmup)  # fmt: skip

        phases: list[tuple[str, Callable[[Phase], Awaitable[None]]]] = [
            (f"single, {args.rate:.0f}/s offered", phase_single_rate),
            (f"single, {args.connections} connections", phase_single_max),
            (f"batch of {BATCH}, {args.batch_connections} connections", phase_batch),
        ]
        for label, body in phases:
            if args.only and args.only not in label:
                continue
            phase = Phase(label)
            print(f"… {label}", flush=True)
            pids = await backend_pids(target.database_url)
            db_cpu, count_before = backends_cpu(pids), await order_count(target.database_url)
            service_cpu = cpu_seconds(target.process.pid)
            await body(phase)
            phase.backlog_at_end = await outbox_backlog(target.database_url)
            phase.drain_s = await drain(target)
            phase.db_cpu_s = backends_cpu(pids) - db_cpu
            phase.whole_cpu_s = cpu_seconds(target.process.pid) - service_cpu
            phase.db_orders = await order_count(target.database_url) - count_before
            results["phases"].append(phase.summary())
            print(json.dumps(results["phases"][-1]), flush=True)
            if args.profile:
                raw = out_dir / f"profile-{len(results['profiles'])}.txt"
                ghost = Phase(label)
                lines = await profiled(target.process.pid, args.seconds, raw, body(ghost))
                await drain(target)
                results["profiles"][label] = lines
                print("\n".join(lines), flush=True)
    finally:
        target.process.send_signal(signal.SIGTERM)
        try:
            target.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            target.process.kill()
        await drop_database(args, name)
    results["load_after"] = os.getloadavg()
    return results


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "python": sys.version.split()[0],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{results['machine']['at']}, {results['machine']['cpus']} cores, load average before "
        f"{'/'.join(f'{x:.2f}' for x in results['machine']['load_before'])}, after "
        f"{'/'.join(f'{x:.2f}' for x in results['load_after'])}",
        "",
        "| phase | orders/s | requests/s | p50 ms | p99 ms | max ms | errors | outbox at the end "
        "| service CPU (cores) | CPU ms per order | same, warm-up to drained | PostgreSQL CPU ms per order |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in results["phases"]:
        lines.append(
            f"| {p['phase']} | {p['orders_per_s']:,.0f} | {p['requests_per_s']:,.0f} | {p['p50_ms']} | {p['p99_ms']} "
            f"| {p['max_ms']} | {p['errors'] or 'none'} | {p['outbox_backlog_at_end']} events, drained after "
            f"{p['relay_drain_s']} s | {p['service_cpu_share']} "
            f"| {p['service_cpu_ms_per_order']} | {p['service_cpu_ms_per_order_drained']} "
            f"| {p['db_cpu_ms_per_order']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kafka", default=os.environ.get("LASTMILE_TEST_KAFKA", "127.0.0.1:19092"))
    parser.add_argument("--pg-host", default=os.environ.get("LASTMILE_TEST_PG_HOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("LASTMILE_TEST_PG_PORT", "55432")))
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered single creations per second")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch-connections", type=int, default=2)
    parser.add_argument("--pool", type=int, default=10, help="the service's database pool size")
    parser.add_argument("--only", default="", help="run only phases whose name contains this")
    parser.add_argument("--profile", action="store_true", help="repeat each phase under py-spy")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "lastmile-bench-intake"))
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(run(args))
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    print()
    print(report(results))


if __name__ == "__main__":
    main()
