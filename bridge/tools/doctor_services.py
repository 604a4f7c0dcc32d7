"""`talon-bridge doctor`'s checks of the services around Kafka: the Schema Registry (confluent
encoding), Talon.One (a ``dry=true`` updateCustomerSessionV2, which Talon.One does not persist)
and, when asked, running workers' health endpoints.
"""

from __future__ import annotations

import asyncio
import time

from bridge.applications import Application
from bridge.avro.codec import Codec, RegistryError
from bridge.errors import ApiConnectionError, ApiError, ApiTimeoutError, FatalApiError
from bridge.settings import ENV_PREFIX, Settings
from bridge.tools.doctor_report import Check

__all__ = ["DRY_SESSION_ID", "registry_checks", "talon_checks", "worker_check"]

# The session ID of the dry call; Talon.One stores nothing for a dry request.
DRY_SESSION_ID = "talon-bridge-doctor"


def registry_checks(settings: Settings) -> list[Check]:
    from bridge.avro.schemas import COMMAND, EFFECTS_EMITTED

    if not settings.schema_registry_url:
        detail = "not checked: single-object encoding needs no registry"
        return [Check("registry", "Schema Registry", "skipped", detail)]
    codec = Codec.from_settings(settings)
    plan = [(COMMAND, t, "producers register it") for t in settings.input_topics]
    plan.append((EFFECTS_EMITTED, settings.output_topic, "the worker registers it on first write"))
    rows: list[Check] = []
    try:
        for name, topic, who in plan:
            subject = codec.subject(name, topic)
            try:
                schema_id = codec.registered_id(name, topic)
            except RegistryError as exc:
                fix = f"check {ENV_PREFIX}SCHEMA_REGISTRY_URL and the registry's credentials"
                rows.append(Check("registry", subject, "fail", str(exc), fix))
                if exc.status is None:
                    break  # unreachable: every other subject fails the same way
                continue
            if schema_id is None:
                detail = f"{name} is not registered yet ({who})"
                rows.append(
                    Check("registry", subject, "warn", detail, "`talon-bridge schemas register`")
                )
            else:
                rows.append(Check("registry", subject, "ok", f"{name} registered, id {schema_id}"))
    finally:
        codec.close()
    return rows


# --- Talon.One --------------------------------------------------------------------------------


def talon_checks(settings: Settings) -> list[Check]:
    """A dry call with each application's key (one, `default`, without a routing table)."""

    async def all_of() -> list[Check]:
        table = settings.applications()
        several = settings.applications_file is not None
        return [await _dry_call(settings, app, several=several) for app in table.applications]

    return asyncio.run(all_of())


async def _dry_call(settings: Settings, app: Application, *, several: bool) -> Check:
    from bridge.talon import IntegrationRequest, NewCustomerSessionV2, TalonClient

    subject = f"{app.name}: {app.base_url}" if several else app.base_url
    key_fix = (
        f"put an Integration API key of the Application in {app.name}'s api_key_file"
        if several
        else f"set {ENV_PREFIX}TALON_API_KEY to an Integration API key of the Application"
    )
    url_fix = f"{app.name}'s base_url" if several else f"{ENV_PREFIX}TALON_BASE_URL"
    client = TalonClient(
        app.base_url,
        app.api_key.get_secret_value(),
        connect_timeout=settings.talon_connect_timeout,
        read_timeout=settings.talon_read_timeout,
        pool_timeout=settings.talon_pool_timeout,
        max_connections=1,
        http_engine=settings.talon_http_engine,
    )
    body = IntegrationRequest(customer_session=NewCustomerSessionV2())
    started = time.monotonic()
    try:
        async with client:
            await client.update_customer_session(DRY_SESSION_ID, body, dry=True)
    except FatalApiError as exc:
        return Check("talon", subject, "fail", f"API key rejected (HTTP {exc.status})", key_fix)
    except (ApiConnectionError, ApiTimeoutError) as exc:
        return Check(
            "talon",
            subject,
            "fail",
            f"unreachable: {exc.message}",
            f"check {url_fix} and the egress network path",
        )
    except ApiError as exc:
        return Check("talon", subject, "fail", f"dry call failed: {exc.message}")
    ms = (time.monotonic() - started) * 1000
    return Check(
        "talon",
        subject,
        "ok",
        f"API key accepted: dry updateCustomerSessionV2 answered in {ms:.0f} ms",
    )


# --- a running worker -------------------------------------------------------------------------


def worker_check(base: str, timeout: float) -> Check:
    import urllib.error
    import urllib.request

    fix = "see the worker's logs and the runbook in docs/operations.md"
    try:
        urllib.request.urlopen(f"{base}/healthz", timeout=timeout).close()  # noqa: S310
        with urllib.request.urlopen(f"{base}/metrics", timeout=timeout) as answer:  # noqa: S310
            metrics = answer.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return Check("worker", base, "fail", f"not healthy: {exc}", fix)
    ready = [line for line in metrics.splitlines() if line.startswith("bridge_ready")]
    if not ready:
        return Check("worker", base, "fail", "/metrics serves no bridge_ready", fix)
    state = "ready" if ready[0].split()[-1] in ("1", "1.0") else "not ready yet"
    return Check("worker", base, "ok", f"/healthz answers; {state}")
