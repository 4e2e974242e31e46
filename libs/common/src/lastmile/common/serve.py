"""Run one service on its own (the distributed mode): `python -m lastmile.<service>`."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from lastmile.common.logging import configure_logging
from lastmile.common.settings import CommonSettings

S = TypeVar("S", bound=CommonSettings)


def uvicorn_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """Our logging, no access log (paths carry tracking tokens and query strings carry device keys)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def serve(settings_type: type[S], create_app: Callable[[S], FastAPI]) -> None:
    settings = settings_type()
    configure_logging(settings.service, settings.log_level, settings.log_format)
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings.host, settings.port))
    run_loop(server.serve())


def quiet_gc(young: int = 10_000) -> None:
    """Tell the cyclic garbage collector what it need not look at again; call it once the app is built.

    What exists then (FastAPI, SQLAlchemy, pydantic's schemas: some 100,000 objects) lives as long as the process:
    frozen, a full collection no longer walks it; and young collections run after `young` allocations rather than
    700, so that fewer short-lived objects (a request's, a batch's) outlive two of them and pile up in the oldest
    generation, whose growth is what triggers full collections. Garbage without cycles is freed at once by
    reference counting either way; what has cycles still is, only later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, 10, 10)


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed (uvicorn's own choice, which `asyncio.run` would bypass): a faster event loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
