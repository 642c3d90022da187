"""Build the remediation runner and the inventory refresh from the app settings.

Why separate from the runner: the runner takes its tables, clients and notifier as arguments (so
tests hand it Azurite tables and loopback fakes); this module is the one place that reads the
environment, picks DefaultAzureCredential (the Function App's managed identity in Azure) and
names the tables and queues, for the Functions triggers and the CLI alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.pipeline.transport import HttpTransport

from grading.remediation.actions import PlannedAction, Services
from grading.remediation.exchange import ExchangeClient
from grading.remediation.graph import GraphClient
from grading.remediation.inventory import ConnectorInventory, RefreshSummary
from grading.remediation.notify import WebhookNotifier
from grading.remediation.runner import Runner
from grading.remediation.tables import RemediationTables
from grading.settings import RemediationSettings, SettingsError, StorageSettings, load_section
from grading.storage.connection import StorageConnection

TransportFactory = Callable[[], HttpTransport]


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
    services = Services(
        exchange=exchange_client(settings, credential, transport=transport),
        graph=GraphClient(credential, endpoint=settings.graph_endpoint, **_transport(transport)),
        request_sweep=QueueSweepRequester(connection.queue(settings.sweep_request_queue)),
    )
    notifier = WebhookNotifier(settings.webhook_url, **_transport(transport)) if settings.webhook_url else None
    return Runner(settings, tables=tables, services=services, notifier=notifier)


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
