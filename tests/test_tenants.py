"""Many tenants from one deployment, against a real Azurite: the registry, the hourly fan-out, one
queue-triggered sweep per tenant on its own tables, one failing tenant not blocking the others, a
tenant's incident remediated inside that tenant only, the cross-tenant summary and the CLI.

The grader is scripted (``store_fakes.ScriptedSweep``) where the grader is not under test; the
storage, the queues and the remediation's Exchange and Graph fakes are real.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from azure.core.credentials import AccessToken
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from fakes.tenant import ORGANIZATION, TENANT_ID, FakeTenant, StaticCredential
from remediation_support import (
    ADMIN_ID,
    ADMIN_UPN,
    fake_tenant,
    message,
    queue_for,
    record_incident,
    transport_for,
)
from store_fakes import Connector, FakeSource, ScriptedSweep

from grading.cli import main
from grading.cloud.tenant_identity import (
    ManagedIdentityAssertion,
    TenantBoundCredential,
    TenantCredentialError,
    TenantCredentials,
)
from grading.incident import MessageError, RemediationMessage
from grading.remediation.tables import ROLES as REMEDIATION_ROLES
from grading.report.summary import render_summary
from grading.scheduler import SweepServices
from grading.settings import SettingsError, StorageSettings, TenancySettings, load_section
from grading.storage.connection import StorageConnection
from grading.storage.store import GraderStore
from grading.storage.tables import ROLES as GRADER_ROLES
from grading.storage.tenant_queues import (
    TenantRemediationQueue,
    TenantSweepRequest,
    parse_sweep_request,
    parse_tenant_incident,
)
from grading.storage.tenants import (
    SweepSlots,
    Tenant,
    TenantError,
    TenantRegistry,
    canonical_tenant_id,
    tenant_report_folder,
    tenant_table_prefix,
)
from grading.wiring import (
    build_tenant_runner,
    credential_for,
    fan_out_tenants,
    handle_tenant_incident,
    run_tenant_sweep_message,
    tenant_registry,
    tenant_sweep_services,
    tenants_summary,
)

NOW = datetime(2026, 11, 20, 12, 40, tzinfo=UTC)
PORTAL_EXPORT = Path(__file__).resolve().parent / "data" / "exports" / "portal"
HOSTILE = "Relay </td><script>alert(1)</script> \u202e#?/\\%00"


def tid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


@pytest.fixture
def env(storage_connection_string: str, unique_name: str) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": storage_connection_string,
        "GRADER_TABLE_PREFIX": unique_name,
        "REMEDIATION_QUEUE": f"q-{unique_name}",
        "GRADER_REPORT_CONTAINER": f"r-{unique_name}",
        "TENANT_SWEEP_QUEUE": f"ts-{unique_name}",
        "TENANT_REMEDIATION_QUEUE": f"tr-{unique_name}",
        "SWEEP_REQUEST_QUEUE": f"sr-{unique_name}",
    }


def register(env: dict[str, str], *tenants: Tenant) -> TenantRegistry:
    registry = tenant_registry(env)
    for t in tenants:
        registry.add(t, now=NOW)
    return registry


def local(n: int, **kwargs: Any) -> Tenant:
    kwargs.setdefault("display_name", f"Customer {n}")
    return Tenant(tid(n), source="local", data_dir=f"/exports/{n}", **kwargs)


def table_snapshot(env: dict[str, str], prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every entity (with its etag) of every table of a tenant's table prefix."""
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    out: dict[str, list[dict[str, Any]]] = {}
    for table in service.query_tables(f"TableName ge '{prefix}' and TableName lt '{prefix}~'"):
        client = service.get_table_client(table.name)
        rows = [dict(e) | {"_etag": e.metadata["etag"]} for e in client.list_entities()]
        out[table.name] = sorted(rows, key=lambda r: (r["PartitionKey"], r["RowKey"]))
    return out


def drain_sweeps(env: dict[str, str], scripts: dict[str, ScriptedSweep], *,
                 failing: frozenset[str] = frozenset()) -> dict[str, str]:
    """Hand every tenant-sweep message to the tenant-sweep handler as the host would; a tenant in
    *failing* has a source that cannot be built. Returns tenant id -> status."""
    queue = queue_for(env["AzureWebJobsStorage"], env["TENANT_SWEEP_QUEUE"])

    def source_for(tenant: Tenant) -> Any:
        if tenant.tenant_id in failing:
            raise ConnectionError(f"tenant {tenant.tenant_id}: the telemetry service refused the app")
        return FakeSource()

    def prepare(tenant: Tenant, services: SweepServices) -> None:
        services.sweep = scripts.setdefault(tenant.tenant_id, ScriptedSweep())

    statuses = {}
    while (received := queue.receive_message()) is not None:
        run = run_tenant_sweep_message(received.content, env, now=NOW, source_for=source_for, prepare=prepare)
        statuses[run.tenant_id] = run.status
        queue.delete_message(received)
    return statuses


# ---------------------------------------------------------------------------------------------
# The registry and its keys


def test_a_tenant_id_must_be_a_guid_and_is_kept_lowercase() -> None:
    assert canonical_tenant_id(" 0000000A-0000-4000-8000-00000000000A ") == "0000000a-0000-4000-8000-00000000000a"
    for bad in ("contoso.onmicrosoft.com", "../x", "0000000a-0000-4000-8000-00000000000a'or''='",
                "0000000a-0000-4000-8000-00000000000a/x", ""):
        with pytest.raises(TenantError):
            canonical_tenant_id(bad)


def test_each_tenant_has_its_own_table_prefix_and_report_folder() -> None:
    a, b = tenant_table_prefix("grader", tid(1)), tenant_table_prefix("grader", tid(2))
    assert a != b and a.startswith("gradert") and len(a) == len("grader") + 13
    assert tenant_table_prefix("grader", tid(1).upper()) == a  # stable, whatever the case
    for role in (*GRADER_ROLES, *REMEDIATION_ROLES):
        assert len(a + role) <= 63
    assert tenant_report_folder(tid(1)) == f"tenants/{tid(1)}/"
    with pytest.raises(SettingsError, match="too long for tenants"):
        tenant_table_prefix("p" * 30, tid(1))


def test_tenant_entries_are_checked() -> None:
    with pytest.raises(TenantError, match="workspace id"):
        Tenant(tid(1), source="loganalytics")
    with pytest.raises(TenantError, match="enforce mode needs"):
        Tenant(tid(1), remediation_mode="enforce")
    with pytest.raises(TenantError, match="initial domain"):
        Tenant(tid(1), exchange_organization="contoso.com/../x")
    with pytest.raises(TenantError, match="policy"):
        Tenant(tid(1), policy='{"no_such_key": 1}')
    with pytest.raises(TenantError, match="certificate"):
        Tenant(tid(1), credential="certificate", certificate_setting="bad name")
    assert Tenant(tid(1), policy='{"true_positive_score": 80}').grading_policy().true_positive_score == 80


def test_the_registry_keeps_entries_and_never_creates_its_table_on_a_read(env: dict[str, str]) -> None:
    registry = tenant_registry(env)
    assert registry.tenants() == []
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    assert not list(service.query_tables(f"TableName eq '{env['GRADER_TABLE_PREFIX']}Tenants'"))
    assert fan_out_tenants(env, now=NOW).sent == []  # single tenant: nothing fans out, nothing is created
    assert not list(service.query_tables(f"TableName eq '{env['GRADER_TABLE_PREFIX']}Tenants'"))

    hostile = local(1, display_name=HOSTILE, protected_connectors=("Inbound:Partner, relay",),
                    domains=("@Contoso.com",))
    registry.add(hostile, now=NOW)
    with pytest.raises(TenantError, match="registered already"):
        registry.add(hostile)
    [stored] = registry.tenants()
    assert stored.display_name == HOSTILE and stored.protected_connectors == ("Inbound:Partner, relay",)
    assert stored.domains == ("contoso.com",) and stored.added_at == "2026-11-20T12:40:00Z"
    assert registry.remove(tid(1)) and registry.get(tid(1)) is None and not registry.remove(tid(1))


# ---------------------------------------------------------------------------------------------
# Fan-out, isolation, failures


@pytest.mark.parametrize("count", [2, 10])
def test_the_fan_out_puts_one_message_per_enabled_tenant(env: dict[str, str], count: int) -> None:
    tenants = [local(n) for n in range(1, count + 1)]
    register(env, *tenants, local(99, enabled=False))
    result = fan_out_tenants(env, now=NOW)
    assert sorted(result.sent) == sorted(t.tenant_id for t in tenants) and result.skipped == [tid(99)]
    queue = queue_for(env["AzureWebJobsStorage"], env["TENANT_SWEEP_QUEUE"])
    bodies = [m.content for m in queue.peek_messages(max_messages=32)]
    requests = [parse_sweep_request(b) for b in bodies]
    assert sorted(r.tenant_id for r in requests) == sorted(result.sent)
    assert {r.kind for r in requests} == {"scheduled"}


@pytest.mark.parametrize("count", [2, 10])
def test_each_tenant_is_swept_on_its_own_state_and_sweeping_b_never_touches_a(env: dict[str, str],
                                                                               count: int) -> None:
    tenants = [local(n) for n in range(1, count + 1)]
    register(env, *tenants)
    a, b = tenants[0], tenants[1]
    # The same hostile connector name in two tenants: a true positive in A, a false positive in B.
    scripts = {a.tenant_id: ScriptedSweep({HOSTILE: Connector("truePositive", NOW - timedelta(hours=30), True)}),
               b.tenant_id: ScriptedSweep({HOSTILE: Connector("falsePositive"), "B only": Connector()})}
    fan_out_tenants(env, now=NOW)
    assert set(drain_sweeps(env, scripts).values()) == {"graded"}

    base = env["GRADER_TABLE_PREFIX"]
    before = table_snapshot(env, tenant_table_prefix(base, a.tenant_id))
    assert before, "tenant A has tables of its own"
    # B is swept again (a requested sweep, and the next hour's scheduled one): A is untouched.
    queue_for(env["AzureWebJobsStorage"], env["TENANT_SWEEP_QUEUE"]).send_message(
        TenantSweepRequest(b.tenant_id, "requested", NOW.isoformat()).to_base64())
    drain_sweeps(env, scripts)
    assert table_snapshot(env, tenant_table_prefix(base, a.tenant_id)) == before

    services_a, services_b = (tenant_sweep_services(t, env) for t in (a, b))
    latest_a = {v["connector"]: v["classification"] for v in services_a.store.latest_verdicts()}
    latest_b = {v["connector"]: v["classification"] for v in services_b.store.latest_verdicts()}
    assert latest_a == {HOSTILE: "truePositive"}
    assert latest_b == {HOSTILE: "falsePositive", "B only": "falsePositive"}
    assert services_a.watermark.watermark() == services_b.watermark.watermark() == datetime(2026, 11, 20, 12,
                                                                                              tzinfo=UTC)
    # The deployment's own tables were never created: single-tenant state is not touched either.
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    assert not list(service.query_tables(f"TableName eq '{base}Connectors'"))

    # Reports: each under its tenant's folder.
    blobs = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]).get_container_client(
        env["GRADER_REPORT_CONTAINER"])
    names = [blob.name for blob in blobs.list_blobs()]
    assert names and all(n.startswith("tenants/") for n in names)
    assert {n.split("/")[1] for n in names} == {t.tenant_id for t in tenants}

    # A's incident went on the tenants' incident queue, naming A; the deployment's queue got nothing.
    wire = [m.content for m in queue_for(env["AzureWebJobsStorage"], env["TENANT_REMEDIATION_QUEUE"]).peek_messages(
        max_messages=32)]
    assert [parse_tenant_incident(w)[0] for w in wire] == [a.tenant_id]
    assert json.loads(parse_tenant_incident(wire[0])[1])["connector"] == HOSTILE
    assert list(queue_for(env["AzureWebJobsStorage"], env["REMEDIATION_QUEUE"]).peek_messages()) == []


def test_one_failing_tenant_does_not_block_the_others(env: dict[str, str]) -> None:
    tenants = [local(n) for n in range(1, 11)]
    register(env, *tenants)
    broken = tenants[3].tenant_id
    fan_out_tenants(env, now=NOW)
    statuses = drain_sweeps(env, {}, failing=frozenset({broken}))
    assert statuses.pop(broken) == "failed"
    assert set(statuses.values()) == {"graded"} and len(statuses) == 9
    services = tenant_sweep_services(tenants[3], env)
    [record] = services.store.sweeps()
    assert record["status"] == "failed" and "refused the app" in record["errors"][0]
    # Its hours are retried by its next message: the watermark stays at the window's start.
    assert services.watermark.watermark() == NOW.replace(minute=0) - timedelta(hours=24)
    for t in tenants[:3] + tenants[4:]:
        [ok] = tenant_sweep_services(t, env).store.sweeps()
        assert ok["status"] == "complete"


def test_a_tenant_sweep_beyond_the_concurrency_limit_waits_on_the_queue(env: dict[str, str]) -> None:
    env = env | {"TENANT_MAX_CONCURRENT_SWEEPS": "1"}
    registry = register(env, local(1), local(2))
    slots = SweepSlots(registry.table, 1, lease=timedelta(minutes=30))
    held = slots.acquire("someone-else", now=NOW)
    assert held is not None and slots.acquire("another", now=NOW) is None
    queue = queue_for(env["AzureWebJobsStorage"], env["TENANT_SWEEP_QUEUE"])
    run = run_tenant_sweep_message(TenantSweepRequest(tid(1)).to_base64(), env, now=NOW,
                                   source_for=lambda t: FakeSource(),
                                   prepare=lambda t, s: setattr(s, "sweep", ScriptedSweep()))
    assert run.status == "deferred"
    # Put back, invisible for a minute.
    assert list(queue.peek_messages()) == [] and queue.get_queue_properties().approximate_message_count == 1
    slots.release(held)
    run = run_tenant_sweep_message(TenantSweepRequest(tid(1)).to_base64(), env, now=NOW,
                                   source_for=lambda t: FakeSource(),
                                   prepare=lambda t, s: setattr(s, "sweep", ScriptedSweep()))
    assert run.status == "graded" and list(slots.holders()) == []
    # A slot whose holder died is free again once its lease ends.
    assert slots.acquire("dies", now=NOW) is not None
    assert slots.acquire("later", now=NOW + timedelta(minutes=31)) is not None


def test_a_message_for_an_unknown_or_malformed_tenant_touches_nothing(env: dict[str, str]) -> None:
    register(env, local(1))
    run = run_tenant_sweep_message(TenantSweepRequest(tid(7)).to_base64(), env, now=NOW)
    assert run.status == "unregistered"
    for body in ("{}", json.dumps({"schemaVersion": 1, "tenantId": "x'; drop"}), "not json"):
        with pytest.raises(MessageError):
            parse_sweep_request(base64.b64encode(body.encode()).decode())
    with pytest.raises(TenantError):
        handle_tenant_incident(base64.b64encode(json.dumps(
            {"schemaVersion": 1, "tenantId": tid(7), "message": message().to_dict()}).encode()).decode(), env)


# ---------------------------------------------------------------------------------------------
# Remediation inside one tenant


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeTenant]:
    yield from fake_tenant(tmp_path)


class RecordingAssertionCredential:
    """Stands in for azure-identity's ClientAssertionCredential: records the tenant and app it was
    built for and the assertion it would present, and hands out the fakes' static token."""

    built: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, tenant_id: str, client_id: str, func: Any, **kwargs: Any) -> None:
        self.tenant_id, self.client_id, self.func = tenant_id, client_id, func
        RecordingAssertionCredential.built.append({"tenant": tenant_id, "app": client_id, **kwargs})

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert self.func() == "mi-token-for-exchange"
        return StaticCredential().get_token(*scopes)


class FakeManagedIdentity:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("mi-token-for-exchange", 2**31)


def test_a_tenant_incident_is_remediated_only_in_its_own_tenant(env: dict[str, str], fake: FakeTenant) -> None:
    other_org = "fabrikam.onmicrosoft.com"
    a = Tenant(TENANT_ID, display_name="Contoso", source="local", data_dir="/x", exchange_organization=ORGANIZATION,
               remediation_mode="enforce")
    b = Tenant(tid(2), display_name="Fabrikam", source="local", data_dir="/y", exchange_organization=other_org,
               remediation_mode="enforce")
    register(env, a, b)
    env = env | {"EXCHANGE_ENDPOINT": fake.server.origin, "GRAPH_ENDPOINT": fake.server.origin,
                 "REMEDIATION_MAX_DISABLES_PER_HOUR": "10", "TENANT_APP_CLIENT_ID": tid(0xA99),
                 "REMEDIATION_WEBHOOK_URL": fake.webhook_url}
    fake.exchange.add("Inbound", "Partner relay")
    fake.graph.add_user(ADMIN_ID, ADMIN_UPN)
    mi = FakeManagedIdentity()
    RecordingAssertionCredential.built.clear()
    credentials = TenantCredentials(app_client_id=tid(0xA99), managed_identity=mi,
                                    assertion_credential=RecordingAssertionCredential)

    def runner_for(tenant: Tenant) -> Any:
        return build_tenant_runner(tenant, env, credentials=credentials, transport=lambda: transport_for(fake.server))

    # Each incident is what its own tenant's sweep stored (the runner acts only on that).
    b_msg = tenant_record(env, b, message("Partner relay", incident="inc-b", actions=("disableConnector",)))
    a_msg = tenant_record(env, a, message("Partner relay", incident="inc-a"))
    sent = TenantRemediationQueue(queue_for(env["AzureWebJobsStorage"], env["TENANT_REMEDIATION_QUEUE"]), b.tenant_id)
    sent.send(b_msg)
    received = queue_for(env["AzureWebJobsStorage"], env["TENANT_REMEDIATION_QUEUE"]).receive_message()
    # B's incident names a connector that exists only in A: B's runner asks B's tenant (the fake
    # answers only for A's), never A's.
    try:
        handle_tenant_incident(received.content, env, runner_for=runner_for)
    except Exception as exc:  # a failure the queue would retry: fine, nothing may have reached A
        assert "Partner relay" in str(exc) or exc is not None
    assert fake.exchange.connector("Inbound", "Partner relay")["Enabled"] is True
    assert fake.exchange.mutations() == [] and fake.graph.revocations() == []

    report = handle_tenant_incident(_envelope(a.tenant_id, a_msg), env, runner_for=runner_for)
    assert report.outcomes()
    assert fake.exchange.connector("Inbound", "Partner relay")["Enabled"] is False
    assert [path.split("/")[3] for path in fake.graph.revocations()] == [ADMIN_ID]
    # The shared webhook says which tenant each notification is about.
    assert fake.webhook.texts() and all(t.startswith(("Tenant `Fabrikam`", "Tenant `Contoso`"))
                                        for t in fake.webhook.texts())
    assert any(t.startswith(f"Tenant `Contoso` ({a.tenant_id})") for t in fake.webhook.texts())
    assert {c[1]["Identity"] for c in fake.exchange.mutations()} == {"Partner relay"}
    # Every credential was built for the tenant it acted in, as the multi-tenant app, with the
    # managed identity's token for the token-exchange audience as its assertion.
    assert {c["tenant"] for c in RecordingAssertionCredential.built} == {a.tenant_id, b.tenant_id}
    assert {c["app"] for c in RecordingAssertionCredential.built} == {tid(0xA99)}
    assert set(mi.scopes) == {"api://AzureADTokenExchange/.default"}
    # Each tenant's audit is in its own table; the immediate sweep asked for is of tenant A only.
    base = env["GRADER_TABLE_PREFIX"]
    audit_a = table_snapshot(env, tenant_table_prefix(base, a.tenant_id))[
        tenant_table_prefix(base, a.tenant_id) + "RemediationAudit"]
    audit_b = table_snapshot(env, tenant_table_prefix(base, b.tenant_id))[
        tenant_table_prefix(base, b.tenant_id) + "RemediationAudit"]
    assert {r["PartitionKey"] for r in audit_a} == {"inc-a"} and {r["PartitionKey"] for r in audit_b} == {"inc-b"}
    requests = [parse_sweep_request(m.content) for m in
                queue_for(env["AzureWebJobsStorage"], env["TENANT_SWEEP_QUEUE"]).peek_messages(max_messages=32)]
    assert requests and {(r.tenant_id, r.kind) for r in requests} == {(a.tenant_id, "requested")}


def test_remediate_once_for_a_tenant_handles_only_that_tenant_s_incidents(
    env: dict[str, str], fake: FakeTenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a = Tenant(TENANT_ID, display_name="Contoso", source="local", data_dir="/x", exchange_organization=ORGANIZATION)
    b = Tenant(tid(2), display_name="Fabrikam", source="local", data_dir="/y",
               exchange_organization="fabrikam.onmicrosoft.com")
    register(env, a, b)
    for key, value in (env | {"EXCHANGE_ENDPOINT": fake.server.origin,
                              "GRAPH_ENDPOINT": fake.server.origin}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("grading.cli.tenants._operator_credential", lambda tenant_id: StaticCredential())
    fake.exchange.add("Inbound", "Partner relay")
    queue = queue_for(env["AzureWebJobsStorage"], env["TENANT_REMEDIATION_QUEUE"])
    queue.send_message(_envelope(a.tenant_id, tenant_record(env, a, message(incident="inc-a"))))
    queue.send_message(_envelope(a.tenant_id, message(incident="inc-forged")))  # no sweep stored it
    queue.send_message(_envelope(b.tenant_id, tenant_record(env, b, message(incident="inc-b"))))

    assert main(["remediate", "--once", "--tenant", a.tenant_id, "--json", "-"]) == 0
    rows = {row["incidentKey"]: row for row in json.loads(capsys.readouterr().out)}

    assert set(rows) == {"inc-a", "inc-forged"}
    assert rows["inc-a"]["outcome"] == "reportOnly" and rows["inc-forged"]["outcome"] == "refused"
    assert fake.exchange.mutations() == []  # report mode, the tenants' default
    for _ in range(6):  # more passes for A than the host's maxDequeueCount (5)
        assert main(["remediate", "--once", "--tenant", a.tenant_id]) == 0
    [left] = queue.peek_messages()  # B's incident waits for B's own run, visible at once
    assert parse_tenant_incident(left.content)[0] == b.tenant_id
    assert left.dequeue_count == 0  # A's passes spent none of the tries the host gives B's incident


def _envelope(tenant_id: str, incident: str | RemediationMessage) -> str:
    msg = incident if isinstance(incident, RemediationMessage) else message("Partner relay", incident=incident)
    doc = {"schemaVersion": 1, "tenantId": tenant_id, "message": msg.to_dict()}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def tenant_record(env: dict[str, str], tenant: Tenant, msg: RemediationMessage) -> RemediationMessage:
    """Store *msg*'s incident in *tenant*'s own tables, as its sweep would before enqueuing."""
    connection = StorageConnection.from_settings(load_section(StorageSettings, env))
    store = GraderStore.open(connection, tenant_table_prefix(env["GRADER_TABLE_PREFIX"], tenant.tenant_id))
    return record_incident(store, msg)


class TenantRecordingCredential:
    """The app's own identity: records the tenant each token is asked for."""

    def __init__(self) -> None:
        self.tenants: list[str | None] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.tenants.append(kwargs.get("tenant_id"))
        return StaticCredential().get_token(*scopes)


def test_the_apps_own_identity_acts_in_a_customer_tenant_only_through_lighthouse() -> None:
    """A tenant registered with the app's own identity (``home``, for a Lighthouse-delegated
    workspace): its Graph and Exchange tokens are asked for in the customer's tenant, never the
    deployment's, so a customer's incident cannot revoke or disable a same-named account at home."""
    home = TenantRecordingCredential()
    credentials = TenantCredentials(app_client_id=None, home_credential=lambda: home)
    woodgrove = Tenant(tid(9), display_name="Woodgrove", source="loganalytics", workspace_id=tid(10),
                       credential="home")

    credential_for(woodgrove, credentials).get_token("https://graph.microsoft.com/.default")
    credential_for(woodgrove, credentials, lighthouse=True).get_token("https://api.loganalytics.io/.default")

    assert home.tenants == [woodgrove.tenant_id, None]


def test_the_credential_factory_builds_what_each_tenant_asks_for() -> None:
    mi = FakeManagedIdentity()
    built: list[tuple[Any, ...]] = []
    credentials = TenantCredentials(
        app_client_id=tid(0xA99), managed_identity=mi, home_credential=lambda: "home",
        settings={"CERT_FABRIKAM": "-----BEGIN CERTIFICATE-----"},
        assertion_credential=lambda *a, **k: built.append(("assertion", *a)) or "assertion",
        certificate_credential=lambda *a, **k: built.append(("certificate", *a, k["certificate_data"])) or "cert",
    )
    assert credentials.for_tenant(tid(1), "federated") == "assertion"
    assert credentials.for_tenant(tid(1), "federated") == "assertion" and len(built) == 1  # kept per tenant
    kind, tenant, app, assertion = built[0]
    assert (kind, tenant, app) == ("assertion", tid(1), tid(0xA99))
    assert isinstance(assertion, ManagedIdentityAssertion) and assertion() == "mi-token-for-exchange"
    assert mi.scopes == ["api://AzureADTokenExchange/.default"]
    assert credentials.for_tenant(tid(2), "certificate", certificate_setting="CERT_FABRIKAM",
                                  certificate_client_id=tid(3)) == "cert"
    assert built[1] == ("certificate", tid(2), tid(3), b"-----BEGIN CERTIFICATE-----")
    assert credentials.for_tenant(tid(4), "home") == "home"
    with pytest.raises(TenantCredentialError, match="TENANT_APP_CLIENT_ID"):
        TenantCredentials(app_client_id=None).for_tenant(tid(1), "federated")
    with pytest.raises(TenantCredentialError, match="CERT_MISSING"):
        credentials.for_tenant(tid(5), "certificate", certificate_setting="CERT_MISSING", certificate_client_id=tid(3))
    # The real azure-identity credential is built without any network call.
    real = TenantCredentials(app_client_id=tid(0xA99), managed_identity=mi).for_tenant(tid(6), "federated")
    assert type(real).__name__ == "ClientAssertionCredential"
    bound = TenantBoundCredential(StaticCredential(), tid(6))
    assert bound.get_token("https://graph.microsoft.com/.default").token


def test_tenancy_settings_have_defaults_and_check_their_values() -> None:
    s = load_section(TenancySettings, {})
    assert (s.sweep_queue, s.remediation_queue, s.max_concurrent_sweeps) == (
        "grader-tenant-sweeps", "grader-tenant-remediation", 8)
    with pytest.raises(SettingsError, match="TENANT_SWEEP_QUEUE"):
        load_section(TenancySettings, {"TENANT_SWEEP_QUEUE": "Bad_Queue"})
    with pytest.raises(SettingsError, match="TENANT_APP_CLIENT_ID"):
        load_section(TenancySettings, {"TENANT_APP_CLIENT_ID": "not-a-guid"})
    assert load_section(StorageSettings, {}).table_prefix == "grader"  # single tenant: nothing new required


# ---------------------------------------------------------------------------------------------
# Summary page and CLI


def test_the_summary_counts_each_tenant_and_escapes_hostile_names(env: dict[str, str]) -> None:
    tenants = [local(1, display_name=HOSTILE), local(2), local(3)]
    register(env, *tenants)
    scripts = {tid(1): ScriptedSweep({"a": Connector("truePositive", NOW - timedelta(hours=30), True),
                                      "b": Connector()}),
               tid(2): ScriptedSweep({"c": Connector()})}
    fan_out_tenants(env, now=NOW)
    drain_sweeps(env, scripts, failing=frozenset({tid(3)}))
    rows = {r["tenantId"]: r for r in tenants_summary(env)}
    assert rows[tid(1)]["counts"]["truePositive"] == 1 and rows[tid(1)]["counts"]["falsePositive"] == 1
    assert rows[tid(2)]["connectors"] == 1 and rows[tid(2)]["lastSweep"]["complete"] is True
    assert rows[tid(3)]["lastSweep"]["status"] == "failed"
    assert rows[tid(1)]["lastSweep"]["report"]["url"].endswith(".html")
    page = render_summary(list(rows.values()))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\u202e" not in page and "\\u202e" in page
    assert page.count('<a href="http') == 2  # the two tenants with a report; the failed one has none
    assert page.count("<td>yes</td>") == 2 and "<td>failed: ConnectionError" in page
    assert 'href="javascript' not in render_summary([{"tenantId": tid(9), "displayName": "x", "counts": {},
                                                      "lastSweep": {"report": {"url": "javascript:alert(1)//.html"}}}])


def test_the_tenants_verbs_and_the_tenant_option(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from grading.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    policy = tmp_path / "policy.json"
    policy.write_text('{"true_positive_score": 75}')
    assert main(["tenants", "add", tid(1), "--name", HOSTILE, "--source", "local", "--data", str(tmp_path),
                 "--policy", str(policy), "--protect", "Partner relay", "--domain", "contoso.com"]) == 0
    assert main(["tenants", "add", tid(1), "--source", "local", "--data", str(tmp_path)]) == 2  # exists
    assert main(["tenants", "add", "not-a-guid"]) == 2
    assert main(["tenants", "add", tid(2), "--source", "local", "--data", str(tmp_path), "--mode", "enforce"]) == 2
    capsys.readouterr()
    assert main(["tenants", "list"]) == 0
    listing = capsys.readouterr().out
    assert tid(1) in listing and "\u202e" not in listing and "<script>" in listing  # terminal text, made safe
    assert main(["tenants", "show", tid(1), "--json", "-"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tablePrefix"] == tenant_table_prefix(env["GRADER_TABLE_PREFIX"], tid(1))
    assert shown["protected_connectors"] == ["Partner relay"] and shown["reportFolder"] == f"tenants/{tid(1)}/"

    # A tenant's sweep through the queue, then its verdicts through --tenant; the deployment's own
    # verdicts (no --tenant) are as empty as before.
    fan_out_tenants(env, now=NOW)
    drain_sweeps(env, {tid(1): ScriptedSweep({"Partner relay": Connector()})})
    assert main(["verdicts", "--tenant", tid(1), "--json", "-"]) == 0
    assert [v["connector"] for v in json.loads(capsys.readouterr().out)] == ["Partner relay"]
    assert main(["verdicts", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["suppress", "Partner relay", "--reason", "known partner", "--by", "ana", "--tenant", tid(1)]) == 0
    # sweep --tenant stores an export's sweep in the tenant's tables, graded with its policy.
    assert main(["sweep", "--data", str(PORTAL_EXPORT), "--tenant", tid(1), "--no-remediation"]) == 0
    assert "tables " + tenant_table_prefix(env["GRADER_TABLE_PREFIX"], tid(1)) in capsys.readouterr().out
    assert len(tenant_sweep_services(local(1), env).store.sweeps()) == 2
    assert main(["verdicts", "--tenant", tid(7)]) == 2  # not registered
    assert main(["pending", "--tenant", tid(1)]) == 0
    assert "no remediation action is waiting" in capsys.readouterr().out
    assert main(["tenants", "summary", "--html", str(tmp_path / "summary.html")]) == 0
    assert "&lt;script&gt;" in (tmp_path / "summary.html").read_text()

    # Offboarding: unregister, then purge every table and report of the tenant.
    assert main(["tenants", "remove", tid(1), "--purge"]) == 0
    out = capsys.readouterr().out
    assert "unregistered" in out and "purged" in out
    assert table_snapshot(env, tenant_table_prefix(env["GRADER_TABLE_PREFIX"], tid(1))) == {}
    blobs = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]).get_container_client(
        env["GRADER_REPORT_CONTAINER"])
    assert [b.name for b in blobs.list_blobs(name_starts_with=f"tenants/{tid(1)}/")] == []
    assert main(["tenants", "remove", tid(1)]) == 2


def test_the_tenant_triggers_bind_to_the_tenant_queues() -> None:
    from test_function_app import functions, load_function_app, only_binding

    registered = functions(load_function_app())
    assert only_binding(registered["tenant_sweep_queue"])["queueName"] == "%TENANT_SWEEP_QUEUE%"
    assert only_binding(registered["tenant_remediation_queue"])["queueName"] == "%TENANT_REMEDIATION_QUEUE%"
    assert only_binding(registered["tenant_fanout_timer"])["schedule"] == "%SWEEP_SCHEDULE%"
    assert only_binding(registered["tenant_maintenance_timer"])["type"] == "timerTrigger"


def test_daily_maintenance_runs_per_tenant_and_one_failure_does_not_stop_the_others(env: dict[str, str]) -> None:
    from grading.wiring import run_tenant_maintenance

    # Tenant 2 has an Exchange organisation but no way to sign in (no TENANT_APP_CLIENT_ID set).
    register(env, local(1), local(2, exchange_organization="fabrikam.onmicrosoft.com"), local(3))
    fan_out_tenants(env, now=NOW)
    drain_sweeps(env, {})
    done = run_tenant_maintenance(env)
    assert sorted(done) == [tid(1), tid(2), tid(3)]
    assert "TENANT_APP_CLIENT_ID" in done[tid(2)]["error"]
    for n in (1, 3):
        assert done[tid(n)]["maintenance"]["resent"] == [] and "error" not in done[tid(n)]
    assert done[tid(2)]["maintenance"]["resent"] == []  # its own tables were maintained before the inventory


def test_the_functions_fan_out_and_sweep_a_tenant_with_the_real_grader(env: dict[str, str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The decorated functions, called as the host calls them: the fan-out timer, then the tenant-sweep
    queue trigger with the tenant's own local source and the real grader."""
    from azure.functions.queue import QueueMessage
    from azure.functions.timer import TimerRequest
    from test_function_app import functions, load_function_app

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SWEEP_SCHEDULE", "0 5 * * * *")
    register(env, Tenant(tid(1), display_name=HOSTILE, source="local", data_dir=str(PORTAL_EXPORT)))
    registered = {name: f.get_user_function() for name, f in functions(load_function_app()).items()}
    registered["tenant_fanout_timer"](TimerRequest(past_due=False))
    queue = queue_for(env["AzureWebJobsStorage"], env["TENANT_SWEEP_QUEUE"])
    received = queue.receive_message()
    registered["tenant_sweep_queue"](QueueMessage(id=received.id, body=received.content.encode(),
                                                  dequeue_count=received.dequeue_count))
    [record] = tenant_sweep_services(local(1), env).store.sweeps()
    # The export is days older than the clock: a window without mail, recorded incomplete, in the
    # tenant's own tables; the deployment's own tables were never created.
    assert record["status"] == "incomplete" and record["source"] == "local"
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    assert not list(service.query_tables(f"TableName eq '{env['GRADER_TABLE_PREFIX']}Sweeps'"))
