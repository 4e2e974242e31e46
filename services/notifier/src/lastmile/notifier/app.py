"""Composition root: the notifier app, its channels (chosen by settings), its sender and webhook dispatcher."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from lastmile.common.bus import Bus, bind
from lastmile.common.clock import Clock
from lastmile.common.runtime import Runtime
from lastmile.common.web import service_app
from lastmile.notifier import api, api_merchants, handlers
from lastmile.notifier.channels import Channel, FileChannel
from lastmile.notifier.email import SmtpChannel
from lastmile.notifier.handlers_webhooks import WebhookDispatcher
from lastmile.notifier.sender import Sender
from lastmile.notifier.settings import NotifierSettings
from lastmile.notifier.sms import TwilioChannel
from lastmile.notifier.webhooks import WebhookClient


def make_channels(settings: NotifierSettings) -> dict[str, Channel]:
    s = settings
    sms: Channel = FileChannel(s.file_outbox_dir)
    email: Channel = FileChannel(s.file_outbox_dir)
    if s.sms_channel == "twilio":
        sms = TwilioChannel(
            base_url=s.twilio_base_url,
            account_sid=s.twilio_account_sid,
            auth_token=s.twilio_auth_token.get_secret_value(),
            sender=s.twilio_from,
            status_callback=lambda nid: f"{s.base_url}/v1/providers/twilio/status?notification={nid}",
            timeout_s=s.provider_timeout_seconds,
            connections=s.send_concurrency_sms,
        )
    if s.email_channel == "smtp":
        email = SmtpChannel(
            host=s.smtp_host,
            port=s.smtp_port,
            tls=s.smtp_tls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value(),
            ca_file=s.smtp_ca_file,
            sender=s.smtp_from,
            connections=s.smtp_connections,
            timeout_s=s.provider_timeout_seconds,
        )
    return {"sms": sms, "email": email}


def create_app(
    settings: NotifierSettings,
    *,
    bus: Bus | None = None,
    clock: Clock | None = None,
    channels: dict[str, Channel] | None = None,
) -> FastAPI:
    """`channels` replaces the ones the settings name (tests that need a channel to misbehave)."""

    def make_deps(runtime: Runtime) -> handlers.Deps:
        deps = handlers.Deps(
            db=runtime.db,
            clock=runtime.clock,
            settings=settings,
            channels=channels if channels is not None else make_channels(settings),
        )
        deps.sender = Sender(runtime.db, runtime.clock, settings, deps.channels)
        client = WebhookClient(
            timeout_s=settings.webhook_timeout_seconds,
            allow_private=settings.webhooks_allow_private,
            connections=settings.webhook_concurrency,
        )
        deps.webhooks = WebhookDispatcher(runtime.db, runtime.clock, settings, client)
        return deps

    return service_app(
        settings,
        title="Lastmile notifier",
        description="Customer ETA messages by SMS and email, and status webhooks to merchants.",
        routers=[api.router, api_merchants.router],
        migrations=Path(__file__).parent / "migrations",
        make_deps=make_deps,
        subscriptions=lambda deps: bind(handlers.SUBSCRIPTIONS, deps),
        background=lambda deps: [deps.sender, deps.webhooks],
        bus=bus,
        clock=clock,
    )
