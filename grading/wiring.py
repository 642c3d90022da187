"""Builds clients and services from the app settings: the one place that reads the environment.

Why one place: the scheduler, the runner and the sources take their stores, clients and settings
as arguments (so tests hand them Azurite tables and loopback fakes); this module reads the app
settings, picks DefaultAzureCredential (the Function App's managed identity in Azure) and names
the tables and queues, for the Functions triggers (``function_app.py`` imports only this module)
and the CLI alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.pipeline.transport import HttpTransport

from grading.cloud.tenant_identity import TenantBoundCredential, TenantCredentials
from grading.policy import load_policy
from grading.remediation.actions import ActionClients, PlannedAction
from grading.remediation.approved_config import Drift, approve, drifted
from grading.remediation.exchange import ExchangeClient
from grading.remediation.graph import GraphClient
from grading.remediation.inventory import ConnectorInventory, RefreshSummary
from grading.remediation.notify import WebhookNotifier, inline
from grading.remediation.runner import Runner
from grading.remediation.tables import RemediationTables
from grading.scheduler import (
    KnownConfigurations,
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
    TenancySettings,
    TenantSettings,
    WindowSettings,
    load_section,
)
from grading.sources.base import TelemetrySource
from grading.sources.factory import make_source
from grading.storage.approved import ApprovedConfiguration, ApprovedConfigurations
from grading.storage.connection import StorageConnection
from grading.storage.incidents import IncidentLedger
from grading.storage.reports import ReportStore
from grading.storage.store import GraderStore
from grading.storage.tenant_queues import (
    TenantRemediationQueue,
    TenantSweepQueue,
    TenantSweepRequester,
    parse_sweep_request,
    parse_tenant_incident,
)
from grading.storage.tenants import (
    SweepSlots,
    Tenant,
    TenantRegistry,
    tenant_report_folder,
    tenant_storage_settings,
    tenant_table_prefix,
)
from grading.storage.watermark import WatermarkStore
from grading.tenancy import FanOut, TenantRun, fan_out, run_tenant_sweep, slot_lease, tenant_summary
from grading.text import install_log_redaction

TransportFactory = Callable[[], HttpTransport]
log = logging.getLogger("grading.wiring")

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
                  services=services, notifier=notifier,
                  approvals=ApprovedConfigurations.open(connection, storage.table_prefix))


def remediation_queues(environ: Mapping[str, str] | None = None) -> tuple[Any, Any]:
    """The remediation queue (REMEDIATION_QUEUE) and its poison queue, on the app's storage, reading
    message text as it was sent (base64, which the runner decodes)."""
    storage = load_section(StorageSettings, environ)
    connection = StorageConnection.from_settings(storage)
    return (connection.queue(storage.remediation_queue),
            connection.queue(f"{storage.remediation_queue}-poison"))


def tenant_remediation_queues(environ: Mapping[str, str] | None = None) -> tuple[Any, Any]:
    """The tenants' remediation queue (TENANT_REMEDIATION_QUEUE, envelopes naming their tenant) and its
    poison queue."""
    storage = load_section(StorageSettings, environ)
    connection = StorageConnection.from_settings(storage)
    name = tenancy_settings(environ).remediation_queue
    return connection.queue(name), connection.queue(f"{name}-poison")


def tenant_incident_unwrapper(tenant_id: str) -> Callable[[str | bytes], str | None]:
    """For ``remediate --once --tenant``: the remediation message inside an envelope naming
    *tenant_id*, None for another tenant's (left on the queue for its own run)."""
    def unwrap(body: str | bytes) -> str | None:
        named, inner = parse_tenant_incident(body)
        return inner if named == tenant_id else None

    return unwrap


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


def configuration_tables(environ: Mapping[str, str] | None = None, *, tenant: Tenant | None = None,
                         connection: StorageConnection | None = None
                         ) -> tuple[ConnectorInventory, ApprovedConfigurations]:
    """The connector inventory and the approved configurations (of *tenant*, or the deployment's own)."""
    storage = load_section(StorageSettings, environ)
    connection = connection or StorageConnection.from_settings(storage)
    prefix = tenant_table_prefix(storage.table_prefix, tenant.tenant_id) if tenant else storage.table_prefix
    tables = RemediationTables.open(connection, prefix)
    return ConnectorInventory(tables.inventory), ApprovedConfigurations.open(connection, prefix)


def approve_configurations(names: list[str] | None, *, by: str, reason: str,
                           environ: Mapping[str, str] | None = None, tenant: Tenant | None = None,
                           connection: StorageConnection | None = None,
                           now: datetime | None = None) -> list[ApprovedConfiguration]:
    """``approve-config``: the inventory's configuration of *names* (None: every connector) as approved."""
    inventory, approvals = configuration_tables(environ, tenant=tenant, connection=connection)
    return approve(inventory, approvals, names, by=by, reason=reason, now=now or datetime.now(UTC))


def configuration_drift(environ: Mapping[str, str] | None = None, *, tenant: Tenant | None = None,
                        connection: StorageConnection | None = None) -> list[Drift]:
    """``drift``: every approved connector whose inventory differs from its approval."""
    inventory, approvals = configuration_tables(environ, tenant=tenant, connection=connection)
    policy_file = tenant.policy_file if tenant else load_section(TenantSettings, environ).policy_file
    storage = load_section(StorageSettings, environ)
    prefix = tenant_table_prefix(storage.table_prefix, tenant.tenant_id) if tenant else storage.table_prefix
    store = GraderStore.open(connection or StorageConnection.from_settings(storage), prefix)
    return drifted(inventory, approvals, load_policy(policy_file), latest=store.latest_verdict)


# ---------------------------------------------------------------------------------------------
# Many tenants (docs/architecture.md, "Many tenants"): each registered tenant's services are the
# deployment's, built from its settings with the tenant's own table prefix, report folder, incident
# queue, telemetry source, Exchange organisation, policy and protected list (grading/storage/tenants.py).


def tenancy_settings(environ: Mapping[str, str] | None = None) -> TenancySettings:
    return load_section(TenancySettings, environ)


def tenant_registry(environ: Mapping[str, str] | None = None, *,
                    connection: StorageConnection | None = None) -> TenantRegistry:
    """The deployment's tenant registry (``<GRADER_TABLE_PREFIX>Tenants``)."""
    storage = load_section(StorageSettings, environ)
    return TenantRegistry.open(connection or StorageConnection.from_settings(storage), storage.table_prefix)


def tenant_credentials(environ: Mapping[str, str] | None = None) -> TenantCredentials:
    """How the app signs in to its tenants: the multi-tenant app (TENANT_APP_CLIENT_ID) with the
    app's managed identity (AZURE_CLIENT_ID: the user-assigned one) as its federated credential."""
    import os

    env = os.environ if environ is None else environ
    return TenantCredentials(app_client_id=tenancy_settings(environ).app_client_id,
                             managed_identity_client_id=env.get("AZURE_CLIENT_ID") or None,
                             home_credential=default_credential, settings=env)


def credential_for(tenant: Tenant, credentials: TenantCredentials, *, lighthouse: bool = False) -> Any:
    """The credential that acts in *tenant*. The app's own identity (``home``) reaches a customer
    only through Azure Lighthouse (*lighthouse*: a delegated Log Analytics workspace); for Graph and
    Exchange its tokens are asked for in the customer's tenant, so they fail there rather than act in
    the deployment's own tenant on a customer's incident."""
    credential = credentials.for_tenant(tenant.tenant_id, tenant.credential,
                                        certificate_setting=tenant.certificate_setting,
                                        certificate_client_id=tenant.certificate_client_id)
    if tenant.credential == "home" and not lighthouse:
        return TenantBoundCredential(credential, tenant.tenant_id)
    return credential


def tenant_sweep_services(tenant: Tenant, environ: Mapping[str, str] | None = None, *,
                          connection: StorageConnection | None = None) -> SweepServices:
    """The scheduler's services for *tenant*: its tables, watermark and lease, its report folder,
    its incidents on TENANT_REMEDIATION_QUEUE naming it, its domains and policy."""
    base = load_section(StorageSettings, environ)
    storage = tenant_storage_settings(base, tenant.tenant_id)
    connection = connection or StorageConnection.from_settings(base)
    tenancy = tenancy_settings(environ)
    store = GraderStore.open(connection, storage.table_prefix)
    return SweepServices(
        store=store,
        ledger=IncidentLedger(store.tables.incidents),
        queue=TenantRemediationQueue(connection.queue(tenancy.remediation_queue), tenant.tenant_id),  # type: ignore[arg-type]
        watermark=WatermarkStore(store.tables.scheduler),
        storage_settings=storage,
        window_settings=load_section(WindowSettings, environ),
        tenant_settings=TenantSettings(tenant_domains=tenant.domains, own_object_ids=tenant.own_object_ids),
        policy=tenant.grading_policy(),
        reports=ReportStore.open(connection, storage.report_container, folder=tenant_report_folder(tenant.tenant_id)),
        configurations=KnownConfigurations.open(connection, storage.table_prefix),
    )


def _tenant_environ(environ: Mapping[str, str] | None, overrides: Mapping[str, str]) -> dict[str, str]:
    import os

    env = dict(os.environ if environ is None else environ)
    env.update(overrides)
    return env


def tenant_telemetry_source(tenant: Tenant, environ: Mapping[str, str] | None = None, *,
                            credentials: TenantCredentials | None = None) -> TelemetrySource:
    """The tenant's source: Defender through Graph in its tenant, its Log Analytics workspace (through
    Lighthouse), or an export folder; the deployment's query settings (timeouts, retries) apply."""
    env = _tenant_environ(environ, {"GRADER_SOURCE": tenant.source, "GRADER_DATA_DIR": tenant.data_dir or "",
                                    "LOG_ANALYTICS_WORKSPACE_ID": tenant.workspace_id or ""})
    settings = load_section(TelemetrySettings, env)
    window = load_section(WindowSettings, env)
    if tenant.source == "local":
        return make_source(settings, window=window)
    return make_source(settings, window=window,
                       credential=credential_for(tenant, credentials or tenant_credentials(environ),
                                                 lighthouse=tenant.source == "loganalytics"))


def tenant_remediation_settings(tenant: Tenant, environ: Mapping[str, str] | None = None) -> RemediationSettings:
    """The deployment's remediation settings with the tenant's mode, protected list and Exchange
    organisation: the Exchange tenant is always the tenant itself."""
    env = _tenant_environ(environ, {
        "REMEDIATION_MODE": tenant.remediation_mode, "EXCHANGE_TENANT_ID": tenant.tenant_id,
        "EXCHANGE_ORGANIZATION_DOMAIN": tenant.exchange_organization or "",
        "REMEDIATION_PROTECTED_CONNECTORS": json.dumps(list(tenant.protected_connectors)),
    })
    return load_section(RemediationSettings, env)


def build_tenant_runner(tenant: Tenant, environ: Mapping[str, str] | None = None, *, credential: Any = None,
                        credentials: TenantCredentials | None = None, transport: TransportFactory | None = None,
                        connection: StorageConnection | None = None) -> Runner:
    """The remediation runner of *tenant*: its own remediation tables, its Exchange organisation and
    Graph tenant through its credential, and immediate sweeps of that tenant only."""
    settings = tenant_remediation_settings(tenant, environ)
    base = load_section(StorageSettings, environ)
    connection = connection or StorageConnection.from_settings(base)
    tables = RemediationTables.open(connection, tenant_table_prefix(base.table_prefix, tenant.tenant_id))
    if credential is None:
        credential = credential_for(tenant, credentials or tenant_credentials(environ))
    tenancy = tenancy_settings(environ)
    services = ActionClients(
        exchange=exchange_client(settings, credential, transport=transport),
        graph=GraphClient(credential, endpoint=settings.graph_endpoint, **_transport(transport)),
        request_sweep=TenantSweepRequester(TenantSweepQueue(connection.queue(tenancy.sweep_queue)), tenant.tenant_id),
    )
    notifier = TenantNotifier(WebhookNotifier(settings.webhook_url, **_transport(transport)), tenant) \
        if settings.webhook_url else None
    # The tenant's own stored truth: its incident ledger and verdicts (grading/remediation/runner.py
    # acts only on what they say), never another tenant's.
    store = GraderStore.open(connection, tenant_table_prefix(base.table_prefix, tenant.tenant_id))
    return Runner(settings, tables=tables, store=store, services=services,
                  notifier=notifier,  # type: ignore[arg-type]
                  approvals=ApprovedConfigurations.open(connection, tenant_table_prefix(base.table_prefix,
                                                                                        tenant.tenant_id)))


class TenantNotifier:
    """The deployment's webhook, each notification headed with the tenant it is about (its display
    name as inert text: whoever onboarded it typed it)."""

    def __init__(self, notifier: WebhookNotifier, tenant: Tenant) -> None:
        self.notifier = notifier
        self.heading = f"Tenant {inline(tenant.display_name or '(no name)', 80)} ({tenant.tenant_id})"

    def send(self, text: str) -> None:
        self.notifier.send(f"{self.heading}\n{text}")

    def close(self) -> None:
        self.notifier.close()


def fan_out_tenants(environ: Mapping[str, str] | None = None, *, now: datetime | None = None,
                    connection: StorageConnection | None = None) -> FanOut:
    """The hourly fan-out: one tenant-sweep message per due tenant (nothing when none is registered)."""
    storage = load_section(StorageSettings, environ)
    connection = connection or StorageConnection.from_settings(storage)
    registry = tenant_registry(environ, connection=connection)
    if not registry.tenants():
        return FanOut()
    queue = TenantSweepQueue(connection.queue(tenancy_settings(environ).sweep_queue))
    return fan_out(registry, queue, now=now)


def run_tenant_sweep_message(body: str | bytes, environ: Mapping[str, str] | None = None, *,
                             now: datetime | None = None, connection: StorageConnection | None = None,
                             source_for: Callable[[Tenant], TelemetrySource] | None = None,
                             prepare: Callable[[Tenant, SweepServices], None] | None = None) -> TenantRun:
    """One tenant-sweep message: that tenant's sweep on its own services. *source_for* and *prepare*
    (given the tenant and its services before the sweep) are for tests and benchmarks."""
    request = parse_sweep_request(body)
    storage = load_section(StorageSettings, environ)
    connection = connection or StorageConnection.from_settings(storage)
    registry = tenant_registry(environ, connection=connection)
    tenant = registry.get(request.tenant_id)
    if tenant is None:  # removed since the fan-out: nothing to sweep, nothing to retry
        log.warning("tenant sweep: tenant %s is not registered (any more); message dropped", request.tenant_id)
        return TenantRun(request.tenant_id, "unregistered")
    if not tenant.enabled:
        return TenantRun(tenant.tenant_id, "disabled")
    services = tenant_sweep_services(tenant, environ, connection=connection)
    if prepare is not None:
        prepare(tenant, services)
    tenancy = tenancy_settings(environ)
    slots = SweepSlots(registry.table, tenancy.max_concurrent_sweeps, lease=slot_lease(services))
    queue = TenantSweepQueue(connection.queue(tenancy.sweep_queue), create=False)

    def source() -> TelemetrySource:
        return source_for(tenant) if source_for is not None else tenant_telemetry_source(tenant, environ)

    return run_tenant_sweep(tenant, services, source, request, slots=slots,
                            requeue=lambda req, delay: queue.send(req, delay=delay), now=now)


def handle_tenant_incident(body: str | bytes, environ: Mapping[str, str] | None = None, *, message_id: str = "",
                           dequeue_count: int = 1, runner_for: Callable[[Tenant], Runner] | None = None,
                           connection: StorageConnection | None = None) -> Any:
    """One tenant incident: the named tenant's runner handles the remediation message inside it.
    An envelope that names no registered tenant raises (the host retries it, then poisons it)."""
    tenant_id, inner = parse_tenant_incident(body)
    tenant = tenant_registry(environ, connection=connection).require(tenant_id)
    runner = runner_for(tenant) if runner_for is not None else build_tenant_runner(tenant, environ,
                                                                                   connection=connection)
    return runner.handle(inner, message_id=message_id, dequeue_count=dequeue_count)


def tenants_summary(environ: Mapping[str, str] | None = None, *,
                    connection: StorageConnection | None = None) -> list[dict[str, Any]]:
    """One summary row per registered tenant, each read from that tenant's own tables."""
    storage = load_section(StorageSettings, environ)
    connection = connection or StorageConnection.from_settings(storage)
    rows = []
    for tenant in tenant_registry(environ, connection=connection).tenants():
        try:
            services = tenant_sweep_services(tenant, environ, connection=connection)
        except Exception as exc:
            rows.append({"tenantId": tenant.tenant_id, "displayName": tenant.display_name, "enabled": tenant.enabled,
                         "counts": {}, "connectors": 0, "lastSweep": None,
                         "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        rows.append(tenant_summary(tenant, services))
    return rows


def purge_tenant(tenant_id: str, environ: Mapping[str, str] | None = None, *,
                 connection: StorageConnection | None = None) -> dict[str, int]:
    """Offboarding: delete every table of the tenant (the grader's and the remediation's) and every
    report blob under its folder. The registry entry is removed separately (``tenants remove``)."""
    from azure.core.exceptions import ResourceNotFoundError

    from grading.remediation.tables import ROLES as REMEDIATION_ROLES
    from grading.storage.approved import ROLE as APPROVED_ROLE
    from grading.storage.tables import ROLES as GRADER_ROLES

    storage = load_section(StorageSettings, environ)
    connection = connection or StorageConnection.from_settings(storage)
    prefix = tenant_table_prefix(storage.table_prefix, tenant_id)
    service = connection.table_service()
    tables = 0
    for role in (*GRADER_ROLES, *REMEDIATION_ROLES, APPROVED_ROLE):
        try:
            service.delete_table(prefix + role)
        except ResourceNotFoundError:
            continue
        tables += 1
    blobs = 0
    reports = ReportStore.open(connection, storage.report_container)
    if reports.service is not None:
        container = reports.service.get_container_client(storage.report_container)
        try:
            for blob in container.list_blobs(name_starts_with=tenant_report_folder(tenant_id)):
                container.delete_blob(blob.name)
                blobs += 1
        except ResourceNotFoundError:
            pass
    return {"tables": tables, "blobs": blobs}


def refresh_tenant_inventory(tenant: Tenant, environ: Mapping[str, str] | None = None, *, credential: Any = None,
                             transport: TransportFactory | None = None, now: datetime | None = None,
                             connection: StorageConnection | None = None) -> RefreshSummary:
    """The read-only connector inventory of *tenant*, into its own inventory table."""
    settings = tenant_remediation_settings(tenant, environ)
    base = load_section(StorageSettings, environ)
    if credential is None:
        credential = credential_for(tenant, tenant_credentials(environ))
    exchange = exchange_client(settings, credential, transport=transport)
    if exchange is None:
        raise SettingsError(f"tenant {tenant.tenant_id} has no Exchange organisation: "
                            "`tenants add --replace --exchange-organization <tenant>.onmicrosoft.com`")
    connection = connection or StorageConnection.from_settings(base)
    tables = RemediationTables.open(connection, tenant_table_prefix(base.table_prefix, tenant.tenant_id))
    try:
        return ConnectorInventory(tables.inventory).refresh(exchange, now=now or datetime.now(UTC))
    finally:
        exchange.close()


def run_tenant_maintenance(environ: Mapping[str, str] | None = None, *, connection: StorageConnection | None = None,
                           inventory: bool = True, credentials: TenantCredentials | None = None,
                           transport: TransportFactory | None = None) -> dict[str, dict[str, Any]]:
    """The daily job for every registered tenant, each on its own tables: retention cleanup and
    re-sending stranded incidents (:func:`run_maintenance`), then, for a tenant with an Exchange
    organisation, its connector inventory. One tenant's failure is logged and reported in its entry
    (``error``); the others go on."""
    storage = load_section(StorageSettings, environ)
    connection = connection or StorageConnection.from_settings(storage)
    out: dict[str, dict[str, Any]] = {}
    for tenant in tenant_registry(environ, connection=connection).tenants(enabled_only=True):
        entry: dict[str, Any] = {}
        try:
            entry["maintenance"] = run_maintenance(tenant_sweep_services(tenant, environ, connection=connection))
            if inventory and tenant.exchange_organization:
                credential = credential_for(tenant, credentials or tenant_credentials(environ))
                summary = refresh_tenant_inventory(tenant, environ, credential=credential, transport=transport,
                                                   connection=connection)
                entry["inventory"] = {"connectors": summary.connectors, "changed": summary.changed,
                                      "removed": summary.removed}
        except Exception as exc:
            log.error("tenant maintenance failed: tenant %s: %s: %s", tenant.tenant_id, type(exc).__name__,
                      str(exc)[:500], exc_info=True)
            entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
        out[tenant.tenant_id] = entry
    return out
