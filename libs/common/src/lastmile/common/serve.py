"""Run one service on its own (the distributed mode): `python -m lastmile.<service>`."""

from __future__ import annotations

import asyncio
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


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed (uvicorn's own choice, which `asyncio.run` would bypass): a faster event loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
