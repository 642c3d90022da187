"""Builds clients and services from the app settings: the one place that reads the environment.

Why one place: the scheduler, the runner and the sources take their stores, clients and settings
as arguments (so tests hand them Azurite tables and loopback fakes); this module reads the app
settings, picks DefaultAzureCredential (the Function App's managed identity in Azure) and names
the tables and queues, for the Functions triggers (``function_app.py`` imports only this module)
and the CLI alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.pipeline.transport import HttpTransport

from grading.policy import load_policy
from grading.remediation.actions import ActionClients, PlannedAction
from grading.remediation.exchange import ExchangeClient
from grading.remediation.graph import GraphClient
from grading.remediation.inventory import ConnectorInventory, RefreshSummary
from grading.remediation.notify import WebhookNotifier
from grading.remediation.runner import Runner
from grading.remediation.tables import RemediationTables
from grading.scheduler import (
    SweepServices,
    run_maintenance,
    run_requested_sweep,
    run_scheduled_sweep,
)
from grading.settings import (
    RemediationSettings,
    SettingsError,
    StorageSettings,
    TelemetrySettings,
    TenantSettings,
    WindowSettings,
    load_section,
)
from grading.sources.base import TelemetrySource
from grading.sources.factory import make_source
from grading.storage.connection import StorageConnection
from grading.storage.store import GraderStore
from grading.text import install_log_redaction

TransportFactory = Callable[[], HttpTransport]

install_log_redaction()  # the triggers log through the host: no secret in any record they make

__all__ = [
    "build_runner", "default_credential", "refresh_inventory", "remediation_queues", "run_maintenance",
    "run_requested_sweep",
    "run_scheduled_sweep", "sweep_services", "telemetry_source",
]
"""What the Functions triggers run: built here, or the scheduler's entry points they call with it."""


def sweep_services(environ: Mapping[str, str] | None = None) -> SweepServices:
    """The scheduler's stores, queue and settings from the app settings (raises SettingsError naming a
    bad one)."""
    storage = load_section(StorageSettings, environ)
    tenant = load_section(TenantSettings, environ)
    return SweepServices.connect(
        StorageConnection.from_settings(storage), storage,
        window_settings=load_section(WindowSettings, environ), tenant_settings=tenant,
        policy=load_policy(tenant.policy_file),
    )


_SCHEMA_STORES: dict[tuple[str, ...], Any] = {}
"""Learnt table schemas per workspace or Graph endpoint, for the life of the worker process."""


def telemetry_source(environ: Mapping[str, str] | None = None) -> TelemetrySource:
    """The source GRADER_SOURCE names (built per run: a cloud source holds a credential). The live
    schemas it learns are kept for the worker's next runs (a day at most)."""
    settings = load_section(TelemetrySettings, environ)
    store = None
    if settings.source in ("loganalytics", "defender"):
        from grading.sources.cloud_base import SchemaStore

        key = (settings.source, settings.workspace_id or "", settings.log_analytics_endpoint, settings.graph_endpoint)
        store = _SCHEMA_STORES.setdefault(key, SchemaStore())
    return make_source(settings, window=load_section(WindowSettings, environ), schema_store=store)


def default_credential() -> Any:
    """DefaultAzureCredential: the app's managed identity in Azure (AZURE_CLIENT_ID picks a
    user-assigned one), a developer's sign-in elsewhere. Never a secret in code."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _transport(factory: TransportFactory | None) -> dict[str, Any]:
    return {"transport": factory()} if factory is not None else {}


def exchange_client(settings: RemediationSettings, credential: Any, *,
                    transport: TransportFactory | None = None) -> ExchangeClient | None:
    if not (settings.exchange_tenant_id and settings.exchange_organization):
        return None
    return ExchangeClient(credential, tenant_id=settings.exchange_tenant_id,
                          organization_domain=settings.exchange_organization, endpoint=settings.exchange_endpoint,
                          **_transport(transport))


class QueueSweepRequester:
    """Asks for an immediate sweep of all connectors by putting a request on the sweep-request queue
    (base64 JSON, as the host's queue trigger expects); the sweep itself runs in its own function."""

    def __init__(self, queue_client: Any) -> None:
        self.queue = queue_client

    def __call__(self, action: PlannedAction) -> None:
        import base64
        import contextlib

        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self.queue.create_queue()
        body = json.dumps({"reason": "remediation", "incidentKey": action.incident_key,
                           "requestedAt": datetime.now(UTC).isoformat()}, ensure_ascii=True)
        self.queue.send_message(base64.b64encode(body.encode("ascii")).decode("ascii"))


def build_runner(environ: Mapping[str, str] | None = None, *, credential: Any = None,
                 transport: TransportFactory | None = None) -> Runner:
    """The runner the settings describe (raises SettingsError naming a bad or missing setting)."""
    settings = load_section(RemediationSettings, environ)
    storage = load_section(StorageSettings, environ)
    connection = StorageConnection.from_settings(storage)
    tables = RemediationTables.open(connection, storage.table_prefix)
    credential = credential if credential is not None else default_credential()
    services = ActionClients(
        exchange=exchange_client(settings, credential, transport=transport),
        graph=GraphClient(credential, endpoint=settings.graph_endpoint, **_transport(transport)),
        request_sweep=QueueSweepRequester(connection.queue(settings.sweep_request_queue)),
    )
    notifier = WebhookNotifier(settings.webhook_url, **_transport(transport)) if settings.webhook_url else None
    return Runner(settings, tables=tables, store=GraderStore.open(connection, storage.table_prefix),
                  services=services, notifier=notifier)


def remediation_queues(environ: Mapping[str, str] | None = None) -> tuple[Any, Any]:
    """The remediation queue (REMEDIATION_QUEUE) and its poison queue, on the app's storage, reading
    message text as it was sent (base64, which the runner decodes)."""
    storage = load_section(StorageSettings, environ)
    connection = StorageConnection.from_settings(storage)
    return (connection.queue(storage.remediation_queue),
            connection.queue(f"{storage.remediation_queue}-poison"))


def refresh_inventory(environ: Mapping[str, str] | None = None, *, credential: Any = None,
                      transport: TransportFactory | None = None, now: datetime | None = None) -> RefreshSummary:
    """The daily read-only connector inventory refresh."""
    settings = load_section(RemediationSettings, environ)
    storage = load_section(StorageSettings, environ)
    credential = credential if credential is not None else default_credential()
    exchange = exchange_client(settings, credential, transport=transport)
    if exchange is None:
        raise SettingsError("the connector inventory needs EXCHANGE_TENANT_ID and EXCHANGE_ORGANIZATION_DOMAIN")
    tables = RemediationTables.open(StorageConnection.from_settings(storage), storage.table_prefix)
    try:
        return ConnectorInventory(tables.inventory).refresh(exchange, now=now or datetime.now(UTC))
    finally:
        exchange.close()
