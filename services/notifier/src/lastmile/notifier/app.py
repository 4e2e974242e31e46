"""Composition root: the notifier app, its channels and its sender, on the shared service skeleton."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from lastmile.common.bus import Bus, bind
from lastmile.common.clock import Clock
from lastmile.common.runtime import Runtime
from lastmile.common.web import service_app
from lastmile.notifier import api, handlers
from lastmile.notifier.channels import FileChannel
from lastmile.notifier.settings import NotifierSettings


def create_app(settings: NotifierSettings, *, bus: Bus | None = None, clock: Clock | None = None) -> FastAPI:
    def make_deps(runtime: Runtime) -> handlers.Deps:
        channels = {"file": FileChannel(settings.file_outbox_dir)}
        deps = handlers.Deps(db=runtime.db, clock=runtime.clock, settings=settings, channels=channels)  # type: ignore[arg-type]
        deps.sender = handlers.Sender(deps)
        return deps

    return service_app(
        settings,
        title="Lastmile notifier",
        description="Customer ETA messages by SMS and email, and status webhooks to merchants.",
        routers=[api.router],
        migrations=Path(__file__).parent / "migrations",
        make_deps=make_deps,
        subscriptions=lambda deps: bind(handlers.SUBSCRIPTIONS, deps),
        background=lambda deps: [deps.sender],
        bus=bus,
        clock=clock,
    )
