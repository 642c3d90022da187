"""The tenant registry: which Microsoft 365 tenants one deployment grades, and where each keeps its state.

Why a registry in Table Storage and per-tenant names rather than a tenant column in every table: the
grader's stores (:class:`~grading.storage.store.GraderStore`, the incident ledger, the watermark,
:class:`~grading.remediation.tables.RemediationTables`, :class:`~grading.storage.reports.ReportStore`)
take a table prefix and a blob folder; giving each tenant its own prefix and folder isolates it
with no change to them. A tenant's hostile connector names are encoded into keys of *its* tables
only, and no query of one tenant's services can name another tenant's table or blob.

==============  ==============  =================  ==================================================
table           PartitionKey    RowKey             holds
==============  ==============  =================  ==================================================
<prefix>Tenants ``tenant``      tenant id (GUID)   one registered tenant: source, Exchange
                                                   organisation, policy, protected list, mode
<prefix>Tenants ``slot``        ``0000``..         the tenant-sweep concurrency slots (lease, holder)
==============  ==============  =================  ==================================================

A tenant's own tables are ``<prefix>t<12 hex><Role>`` (:func:`tenant_table_prefix`, a hash of
the tenant id, since a GUID would not fit Azure's 63-character table names beside every role and
a custom prefix), its reports ``tenants/<tenant id>/<yyyy>/<mm>/<sweepId>.html`` in the report
container (:func:`tenant_report_folder`). Adding a tenant whose hash matches another's is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from grading.errors import InputError
from grading.policy import Policy, PolicyError, policy_from_mapping
from grading.settings import SettingsError, StorageSettings
from grading.storage.connection import StorageConnection

PARTITION = "tenant"
SLOT_PARTITION = "slot"
REGISTRY_ROLE = "Tenants"
SOURCES = ("defender", "loganalytics", "local")
CREDENTIALS = ("federated", "certificate", "home")
"""How the grader signs in to the tenant: ``federated`` (the multi-tenant app TENANT_APP_CLIENT_ID,
its credential the app's managed identity), ``certificate`` (an app registration's certificate,
held in an app setting that is a Key Vault reference), ``home`` (the app's own identity: its own
tenant, or a Log Analytics workspace delegated to it through Azure Lighthouse)."""
MODES = ("report", "enforce")
HASH_CHARS = 12
MAX_DISPLAY_NAME = 256
MAX_POLICY_CHARS = 30_000

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class TenantError(InputError):
    """A tenant entry or id the registry refuses; the message says which field and why."""


def canonical_tenant_id(value: str) -> str:
    """The tenant id as the registry keys it (a GUID, lowercase); :class:`TenantError` for anything
    else, so no tenant id can carry a character a Table key or a blob path would treat specially."""
    text = str(value).strip()
    if not _GUID.fullmatch(text):
        raise TenantError(f"tenant id {text[:60]!r} is not valid: expected the tenant's id, a GUID "
                          "(Entra admin center, Overview, Tenant ID)")
    return text.lower()


def tenant_hash(tenant_id: str) -> str:
    return hashlib.sha256(canonical_tenant_id(tenant_id).encode("ascii")).hexdigest()[:HASH_CHARS]


def tenant_table_prefix(base_prefix: str, tenant_id: str) -> str:
    """``<base>t<12 hex>``: the tenant's table prefix (letters and digits, at most 40 characters)."""
    prefix = f"{base_prefix}t{tenant_hash(tenant_id)}"
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,39}", prefix):
        raise SettingsError(
            f"setting GRADER_TABLE_PREFIX={base_prefix!r} is too long for tenants: a tenant's tables are named "
            f"<prefix>t<{HASH_CHARS} hex><Role> and the prefix part may be at most {40 - HASH_CHARS - 1} characters"
        )
    return prefix


def tenant_report_folder(tenant_id: str) -> str:
    return f"tenants/{canonical_tenant_id(tenant_id)}/"


def tenant_storage_settings(base: StorageSettings, tenant_id: str) -> StorageSettings:
    """The deployment's storage settings with the tenant's own table prefix: the stores built from
    them read and write only that tenant's tables."""
    return dataclasses.replace(base, table_prefix=tenant_table_prefix(base.table_prefix, tenant_id))


def registry_table_name(base_prefix: str) -> str:
    return base_prefix + REGISTRY_ROLE


@dataclasses.dataclass(frozen=True)
class Tenant:
    """One registered tenant. Every string but the id is checked for shape, never trusted: the
    display name is shown escaped wherever it appears."""

    tenant_id: str
    display_name: str = ""
    source: str = "defender"
    credential: str = "federated"
    workspace_id: str | None = None
    data_dir: str | None = None
    """The export folder of a ``local`` source (demos, tests and benchmarks)."""
    certificate_setting: str | None = None
    """``certificate``: the app setting holding the PEM certificate (a Key Vault reference)."""
    certificate_client_id: str | None = None
    """``certificate``: the client id of the app registration the certificate belongs to."""
    exchange_organization: str | None = None
    policy: str | None = None
    """The tenant's grading policy, as the JSON text of a policy file (None: the defaults)."""
    protected_connectors: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    """The tenant's own mail domains (its GRADER_TENANT_DOMAINS): the deployment's never apply."""
    own_object_ids: tuple[str, ...] = ()
    """Object ids the grader acts as in this tenant (the app's service principal there): its own
    remediation is not a configuration change to grade (its GRADER_OWN_OBJECT_IDS)."""
    remediation_mode: str = "report"
    enabled: bool = True
    added_at: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tenant_id", canonical_tenant_id(self.tenant_id))
        object.__setattr__(self, "protected_connectors", tuple(self.protected_connectors))
        object.__setattr__(self, "domains", tuple(d.strip().lower().lstrip("@") for d in self.domains if d.strip()))
        object.__setattr__(self, "own_object_ids", tuple(self.own_object_ids))
        self.validate()

    def validate(self) -> None:
        if len(self.display_name) > MAX_DISPLAY_NAME:
            raise TenantError(f"display name: at most {MAX_DISPLAY_NAME} characters")
        if self.source not in SOURCES:
            raise TenantError(f"source {self.source[:40]!r}: expected one of {', '.join(SOURCES)}")
        if self.credential not in CREDENTIALS:
            raise TenantError(f"credential {self.credential[:40]!r}: expected one of {', '.join(CREDENTIALS)}")
        if self.remediation_mode not in MODES:
            raise TenantError(f"remediation mode {self.remediation_mode[:40]!r}: expected report or enforce")
        if self.source == "loganalytics" and not (self.workspace_id and _GUID.fullmatch(self.workspace_id)):
            raise TenantError("a loganalytics tenant needs its workspace id (a GUID), e.g. a workspace delegated "
                              "through Azure Lighthouse")
        if self.source == "local" and not self.data_dir:
            raise TenantError("a local tenant needs its export folder")
        if self.credential == "certificate":
            if not (self.certificate_setting and _SETTING_NAME.fullmatch(self.certificate_setting)):
                raise TenantError("a certificate credential needs the name of the app setting holding the "
                                  "certificate (letters, digits, _)")
            if not (self.certificate_client_id and _GUID.fullmatch(self.certificate_client_id)):
                raise TenantError("a certificate credential needs its app registration's client id (a GUID)")
        for domain in self.domains:
            if not _DOMAIN.fullmatch(domain):
                raise TenantError(f"domain {domain[:80]!r}: expected a mail domain such as contoso.com")
        for oid in self.own_object_ids:
            if not _GUID.fullmatch(oid):
                raise TenantError(f"own object id {oid[:60]!r}: expected a GUID")
        org = self.exchange_organization
        if org and not _DOMAIN.fullmatch(org):
            raise TenantError(f"Exchange organisation {org[:80]!r}: expected the tenant's initial domain such as "
                              "contoso.onmicrosoft.com")
        if self.remediation_mode == "enforce" and not org:
            raise TenantError("enforce mode needs the tenant's Exchange organisation (its initial domain)")
        if self.policy is not None:
            self.grading_policy()

    def grading_policy(self) -> Policy:
        if self.policy is None:
            return Policy()
        if len(self.policy) > MAX_POLICY_CHARS:
            raise TenantError(f"policy: at most {MAX_POLICY_CHARS} characters of JSON")
        try:
            return policy_from_mapping(json.loads(self.policy))
        except ValueError as exc:  # PolicyError is a ValueError, as is a JSON error
            kind = "" if isinstance(exc, PolicyError) else "not valid JSON: "
            raise TenantError(f"policy of tenant {self.tenant_id}: {kind}{exc}") from None

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": PARTITION, "RowKey": self.tenant_id, "DisplayName": self.display_name,
            "Source": self.source, "Credential": self.credential, "RemediationMode": self.remediation_mode,
            "ProtectedConnectors": json.dumps(list(self.protected_connectors), ensure_ascii=True),
            "Domains": ",".join(self.domains), "OwnObjectIds": ",".join(self.own_object_ids),
            "Enabled": self.enabled, "AddedAt": self.added_at,
        }
        for key, value in (("WorkspaceId", self.workspace_id), ("DataDir", self.data_dir),
                           ("CertificateSetting", self.certificate_setting),
                           ("CertificateClientId", self.certificate_client_id),
                           ("ExchangeOrganization", self.exchange_organization), ("Policy", self.policy)):
            if value is not None:
                entity[key] = value
        return entity

    @classmethod
    def from_entity(cls, e: Any) -> Tenant:
        try:
            protected = tuple(json.loads(e.get("ProtectedConnectors") or "[]"))
        except ValueError:
            protected = ()
        return cls(
            tenant_id=e["RowKey"], display_name=e.get("DisplayName", ""), source=e.get("Source", "defender"),
            credential=e.get("Credential", "federated"), workspace_id=e.get("WorkspaceId"),
            data_dir=e.get("DataDir"), certificate_setting=e.get("CertificateSetting"),
            certificate_client_id=e.get("CertificateClientId"), exchange_organization=e.get("ExchangeOrganization"),
            policy=e.get("Policy"), protected_connectors=protected,
            domains=tuple(d for d in str(e.get("Domains") or "").split(",") if d),
            own_object_ids=tuple(o for o in str(e.get("OwnObjectIds") or "").split(",") if o),
            remediation_mode=e.get("RemediationMode", "report"), enabled=bool(e.get("Enabled", True)),
            added_at=e.get("AddedAt", ""),
        )

    def as_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["protected_connectors"] = list(self.protected_connectors)
        doc["domains"] = list(self.domains)
        doc["own_object_ids"] = list(self.own_object_ids)
        return doc


class TenantRegistry:
    """The tenants of one deployment, in ``<GRADER_TABLE_PREFIX>Tenants``.

    The table is created by the first ``tenants add``, never by a read: a deployment that grades
    only its own tenant never has it, and a read finds no tenant."""

    def __init__(self, table: TableClient, *, base_prefix: str = "grader") -> None:
        self.table = table
        self.base_prefix = base_prefix

    @classmethod
    def open(cls, connection: StorageConnection, base_prefix: str = "grader") -> TenantRegistry:
        return cls(connection.table_service().get_table_client(registry_table_name(base_prefix)),
                   base_prefix=base_prefix)

    def _create_table(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.table.create_table()

    def tenants(self, *, enabled_only: bool = False) -> list[Tenant]:
        """Every registered tenant, by id; [] when the registry table does not exist."""
        try:
            entities = list(self.table.query_entities(f"PartitionKey eq '{PARTITION}'"))
        except ResourceNotFoundError:
            return []
        out = []
        for e in entities:
            tenant = Tenant.from_entity(e)
            if tenant.enabled or not enabled_only:
                out.append(tenant)
        return sorted(out, key=lambda t: t.tenant_id)

    def get(self, tenant_id: str) -> Tenant | None:
        key = canonical_tenant_id(tenant_id)
        try:
            return Tenant.from_entity(self.table.get_entity(PARTITION, key))
        except ResourceNotFoundError:
            return None

    def require(self, tenant_id: str) -> Tenant:
        tenant = self.get(tenant_id)
        if tenant is None:
            raise TenantError(f"tenant {canonical_tenant_id(tenant_id)} is not registered: "
                              "`python -m grading tenants add` it first, or check `tenants list`")
        return tenant

    def add(self, tenant: Tenant, *, replace: bool = False, now: datetime | None = None) -> Tenant:
        """Register *tenant* (or replace its entry with *replace*); refuses a tenant whose table
        prefix another tenant already has."""
        self._create_table()
        mine = tenant_hash(tenant.tenant_id)
        for other in self.tenants():
            if other.tenant_id != tenant.tenant_id and tenant_hash(other.tenant_id) == mine:
                raise TenantError(f"tenant {tenant.tenant_id} would share its tables with {other.tenant_id} "
                                  f"(same {HASH_CHARS}-character hash): it cannot be added")
        added = tenant.added_at or f"{(now or datetime.now(UTC)):%Y-%m-%dT%H:%M:%SZ}"
        stamped = dataclasses.replace(tenant, added_at=added)
        entity = stamped.to_entity()
        if replace:
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        else:
            try:
                self.table.create_entity(entity)
            except ResourceExistsError:
                raise TenantError(f"tenant {tenant.tenant_id} is registered already; pass --replace to change "
                                  "its entry") from None
        return stamped

    def remove(self, tenant_id: str) -> bool:
        key = canonical_tenant_id(tenant_id)
        if self.get(key) is None:  # delete_entity answers a missing entity without an error
            return False
        self.table.delete_entity(PARTITION, key)
        return True


# ---------------------------------------------------------------------------------------------
# Concurrency: at most TENANT_MAX_CONCURRENT_SWEEPS tenant sweeps at once, across every instance.


@dataclasses.dataclass(frozen=True)
class Slot:
    row: str
    holder: str
    etag: str


class SweepSlots:
    """Leased slots in the registry table; a tenant sweep holds one while it runs.

    Why slots in a table rather than the host's own limits alone: host.json's batchSize bounds one
    instance, and Flex Consumption adds instances as the queue grows; the slots bound the sum, so
    the customers' services and the storage account see at most that many sweeps at once. A slot
    whose holder died is free again when its lease ends."""

    def __init__(self, table: TableClient, limit: int, *, lease: timedelta) -> None:
        self.table = table
        self.limit = limit
        self.lease = lease

    def acquire(self, holder: str, *, now: datetime) -> Slot | None:
        """A free slot for *holder*, or None when all are held."""
        until = (now + self.lease).astimezone(UTC)
        try:
            held = {e["RowKey"]: e for e in self.table.query_entities(f"PartitionKey eq '{SLOT_PARTITION}'")}
        except ResourceNotFoundError:
            held = {}
        for row in (f"{i:04d}" for i in range(self.limit)):
            entity = {"PartitionKey": SLOT_PARTITION, "RowKey": row, "Holder": holder, "Until": until}
            current = held.get(row)
            try:
                if current is None:
                    meta = self.table.create_entity(entity)
                elif not current.get("Holder") or _as_utc(current.get("Until")) <= now:
                    meta = self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                                    match_condition=MatchConditions.IfNotModified)
                else:
                    continue
            except (ResourceExistsError, ResourceNotFoundError):
                continue  # another sweep took it first
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    continue
                raise
            return Slot(row, holder, str(meta.get("etag", "")))
        return None

    def release(self, slot: Slot) -> None:
        entity = {"PartitionKey": SLOT_PARTITION, "RowKey": slot.row, "Holder": "",
                  "Until": datetime(1970, 1, 1, tzinfo=UTC)}
        # A slot taken over after its lease ran out is the new holder's now: leave it.
        with contextlib.suppress(ResourceNotFoundError, HttpResponseError):
            self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=slot.etag,
                                     match_condition=MatchConditions.IfNotModified)

    def holders(self) -> Iterator[str]:
        try:
            for e in self.table.query_entities(f"PartitionKey eq '{SLOT_PARTITION}'"):
                if e.get("Holder"):
                    yield str(e["Holder"])
        except ResourceNotFoundError:
            return


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(1970, 1, 1, tzinfo=UTC)
