"""The connector inventory: a read-only ``Get-InboundConnector`` / ``Get-OutboundConnector`` snapshot.

Why: telemetry only reaches back a few weeks, so a connector created long ago looks "new" to a
sweep, and a disabled connector looks silent. The daily refresh records each connector's
creation and change dates and current enabled state, for verdicts to read (:meth:`records`).

It also remembers the addresses (SenderIPAddresses / SmartHosts) a connector had *before* its last
change, which is what a revert restores when the message does not carry them: a snapshot taken
before the malicious change is the configuration to go back to.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from grading.cloud.http import ErrorKind, ServiceCallError
from grading.cloud.responses import parse_datetime
from grading.grader.configuration import configuration_values
from grading.incident import RemediationMessage
from grading.remediation.actions import snapshot
from grading.remediation.exchange import KINDS, Connector, ExchangeClient, rule_enabled
from grading.storage.entities import get_json, put_json
from grading.storage.keys import encode_key

log = logging.getLogger(__name__)

RULES_PARTITION = "TransportRule"
"""Transport rules share the inventory table, in a partition of their own."""
CHANGE_MARGIN = timedelta(minutes=1)
"""Exchange's WhenChanged and the audit event's Timestamp of one change differ by seconds."""


@dataclass(frozen=True)
class InventoryRecord:
    kind: str
    name: str
    enabled: bool
    present: bool
    when_created: datetime | None
    when_changed: datetime | None
    addresses: tuple[str, ...]
    previous_addresses: tuple[str, ...] | None
    previous_when_changed: datetime | None
    refreshed_at: datetime
    configuration: dict[str, str] = field(default_factory=dict)
    """The connector's configuration at the refresh (lower-case names, as the grader replays them)."""

    def as_facts(self) -> dict[str, Any]:
        """What the grader reads (``ConnectorFacts.inventory``)."""
        return {"configuration": dict(self.configuration), "refreshedAt": self.refreshed_at}


@dataclass(frozen=True)
class RefreshSummary:
    connectors: int
    removed: int
    changed: int


def _record(e: Any) -> InventoryRecord:
    previous = e.get("previousAddressesJson")
    return InventoryRecord(
        kind=e["PartitionKey"], name=e["name"], enabled=bool(e.get("enabled")), present=bool(e.get("present")),
        when_created=e.get("whenCreated"), when_changed=e.get("whenChanged"),
        addresses=tuple(json.loads(e.get("addressesJson") or "[]")),
        previous_addresses=tuple(json.loads(previous)) if previous else None,
        previous_when_changed=e.get("previousWhenChanged"), refreshed_at=e["refreshedAt"],
        configuration=get_json(e, "configuration", {}),
    )


class ConnectorInventory:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def get(self, kind: str, name: str) -> InventoryRecord | None:
        try:
            return _record(self.table.get_entity(kind, encode_key(name)))
        except ResourceNotFoundError:
            return None

    def records(self) -> list[InventoryRecord]:
        return sorted((_record(e) for e in self.table.list_entities() if e["PartitionKey"] in KINDS),
                      key=lambda r: (r.kind, r.name.casefold()))

    def transport_rules(self) -> list[dict[str, Any]]:
        """The transport rules of the last refresh: ``name``, ``enabled``, ``present``, ``rule`` (as
        ``Get-TransportRule`` returned it), ``refreshedAt``."""
        out = []
        for e in self.table.query_entities("PartitionKey eq @p", parameters={"p": RULES_PARTITION}):
            out.append({"name": e["name"], "enabled": bool(e.get("enabled")), "present": bool(e.get("present")),
                        "rule": get_json(e, "rule", {}), "refreshedAt": e.get("refreshedAt")})
        return sorted(out, key=lambda r: r["name"].casefold())

    def _refresh_rules(self, exchange: ExchangeClient, now: datetime) -> None:
        """Snapshot every transport rule (``Get-TransportRule``); a deployment whose role does not grant it
        yet keeps the connector inventory and logs why (run infra/grant-permissions.ps1 again)."""
        try:
            rules = exchange.list_transport_rules()
        except ServiceCallError as err:
            if err.kind is not ErrorKind.PERMISSION:
                raise
            log.warning("transport rules not read: %s", err)
            return
        seen = set()
        for rule in rules:
            name = str(rule.get("Name") or rule.get("Identity") or "")
            key = encode_key(name)
            seen.add(key)
            entity: dict[str, Any] = {"PartitionKey": RULES_PARTITION, "RowKey": key, "name": name,
                                      "enabled": rule_enabled(rule), "present": True, "refreshedAt": now}
            put_json(entity, "rule", {k: v for k, v in rule.items() if not str(k).startswith("@")})
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        for e in self.table.query_entities("PartitionKey eq @p", parameters={"p": RULES_PARTITION}):
            if e["RowKey"] not in seen and e.get("present"):
                self.table.upsert_entity({"PartitionKey": RULES_PARTITION, "RowKey": e["RowKey"], "present": False,
                                          "removedSeenAt": now}, mode=UpdateMode.MERGE)

    def refresh(self, exchange: ExchangeClient, *, now: datetime) -> RefreshSummary:
        """Snapshot every connector; mark those no longer listed as removed. Read-only on Exchange."""
        seen: set[tuple[str, str]] = set()
        changed = 0
        for kind in KINDS:
            for connector in exchange.list_connectors(kind):
                seen.add((kind, encode_key(connector.name)))
                changed += self._store(connector, now)
        removed = 0
        for e in self.table.list_entities():
            if e["PartitionKey"] not in KINDS:
                continue
            if (e["PartitionKey"], e["RowKey"]) not in seen and e.get("present"):
                self.table.upsert_entity({"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"], "present": False,
                                          "removedSeenAt": now}, mode=UpdateMode.MERGE)
                removed += 1
        self._refresh_rules(exchange, now)
        return RefreshSummary(connectors=len(seen), removed=removed, changed=changed)

    def _store(self, c: Connector, now: datetime) -> int:
        old = self.get(c.kind, c.name)
        entity: dict[str, Any] = {
            "PartitionKey": c.kind, "RowKey": encode_key(c.name), "name": c.name, "identity": c.identity,
            "enabled": c.enabled, "present": True, "connectorType": c.connector_type or "",
            "addressesJson": json.dumps(list(c.addresses)), "refreshedAt": now,
        }
        put_json(entity, "configuration", configuration_values(snapshot(c)))
        for prop, value in (("whenCreated", c.when_created), ("whenChanged", c.when_changed)):
            if value is not None:
                entity[prop] = value
        moved = old is not None and old.present and set(old.addresses) != set(c.addresses)
        if moved and old is not None:
            entity["previousAddressesJson"] = json.dumps(list(old.addresses))
            if old.when_changed is not None:
                entity["previousWhenChanged"] = old.when_changed
        elif old is not None and old.previous_addresses is not None:
            entity["previousAddressesJson"] = json.dumps(list(old.previous_addresses))
            if old.previous_when_changed is not None:
                entity["previousWhenChanged"] = old.previous_when_changed
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return int(moved)

    def previous_addresses(self, msg: RemediationMessage) -> tuple[str, tuple[str, ...], str] | None:
        """The connector's addresses before the change the message reports (its ``lastModified``),
        from a snapshot taken before that change; None when no snapshot is old enough."""
        changed_text = msg.evidence_summary.get("lastModified")
        if not isinstance(changed_text, str):
            return None
        try:
            changed_at = parse_datetime(changed_text)
        except ValueError:
            return None
        kinds = KINDS if msg.connector_type == "Unknown" else (msg.connector_type,)
        for kind in kinds:
            record = self.get(kind, msg.connector)
            if record is None:
                continue
            parameter = Connector.address_parameter(kind)
            cutoff = changed_at - CHANGE_MARGIN
            if record.when_changed is not None and record.when_changed < cutoff and record.addresses:
                return parameter, record.addresses, f"the inventory snapshot of {record.refreshed_at:%Y-%m-%d %H:%M}Z"
            if (record.previous_addresses and record.previous_when_changed is not None
                    and record.previous_when_changed < cutoff):
                return parameter, record.previous_addresses, "the inventory snapshot before the last change"
        return None
