"""Approved connector configurations: what each connector is supposed to look like, who approved it and why.

Why a table of its own: an approval outlives sweeps and inventory refreshes, and is written by people
(``python -m grading approve-config``), read by every sweep (drift from it is a finding) and by the
remediation runner (a revert restores it). ``<prefix>ApprovedConfigurations``: PartitionKey the connector's
kind (Inbound | Outbound), RowKey the encoded name (:mod:`grading.storage.keys`); the configuration is JSON
split across properties (:mod:`grading.storage.entities`), and two approvals of one connector that race
are told apart by the entity's etag (the later one fails instead of silently replacing the other).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from grading.errors import InputError
from grading.storage.connection import StorageConnection
from grading.storage.entities import get_json, put_json
from grading.storage.keys import encode_key

ROLE = "ApprovedConfigurations"
KINDS = ("Inbound", "Outbound")
MAX_REASON_CHARS = 2000
CONFIGURATION_BUDGET_CHARS = 200_000
"""A connector's properties as JSON; far above any real connector, well inside an entity's 1 MiB."""


class ApprovalConflict(InputError):
    """Another approval of the same connector was written meanwhile; read it and approve again."""


@dataclass(frozen=True)
class ApprovedConfiguration:
    kind: str
    name: str
    configuration: dict[str, str]
    """Lower-case parameter names -> values, as the grader's configuration replay keeps them."""
    approved_at: datetime
    approved_by: str
    reason: str
    etag: str = ""

    def as_facts(self) -> dict[str, Any]:
        """What the grader reads (``ConnectorFacts.approved``)."""
        return {"configuration": dict(self.configuration), "approvedAt": self.approved_at,
                "approvedBy": self.approved_by, "reason": self.reason}


def _record(e: Mapping[str, Any]) -> ApprovedConfiguration:
    return ApprovedConfiguration(
        kind=e["PartitionKey"], name=e["name"], configuration=get_json(e, "configuration", {}),
        approved_at=e["approvedAt"], approved_by=e.get("approvedBy", ""), reason=e.get("reason", ""),
        etag=str(getattr(e, "metadata", {}).get("etag", "")),
    )


class ApprovedConfigurations:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    @classmethod
    def open(cls, connection: StorageConnection, prefix: str = "grader", *,
             create: bool = True) -> ApprovedConfigurations:
        return cls.from_service(connection.table_service(), prefix, create=create)

    @classmethod
    def from_service(cls, service: TableServiceClient, prefix: str = "grader", *,
                     create: bool = True) -> ApprovedConfigurations:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,39}", prefix):
            raise ValueError(f"table prefix {prefix!r}: expected letters and digits starting with a letter")
        if create:
            with contextlib.suppress(ResourceExistsError):
                service.create_table(prefix + ROLE)
        return cls(service.get_table_client(prefix + ROLE))

    def get(self, kind: str, name: str) -> ApprovedConfiguration | None:
        try:
            return _record(self.table.get_entity(kind, encode_key(name)))
        except ResourceNotFoundError:
            return None

    def records(self) -> list[ApprovedConfiguration]:
        return sorted((_record(e) for e in self.table.list_entities()), key=lambda r: (r.kind, r.name.casefold()))

    def approve(self, kind: str, name: str, configuration: Mapping[str, str], *, by: str, reason: str,
                now: datetime, etag: str | None = None) -> ApprovedConfiguration:
        """Record *configuration* as the connector's approved one. *etag*: the approval this one replaces
        (from :meth:`get`); without it, an approval that exists already is read and replaced only if it
        has not changed since. Raises :class:`ApprovalConflict` when another approval won the race."""
        if kind not in KINDS:
            raise InputError(f"connector kind {kind!r}: expected Inbound or Outbound")
        if not by.strip():
            raise InputError("who approves is required")
        entity: dict[str, Any] = {"PartitionKey": kind, "RowKey": encode_key(name), "name": name,
                                  "approvedAt": now, "approvedBy": by[:256], "reason": reason[:MAX_REASON_CHARS]}
        put_json(entity, "configuration", dict(configuration), budget=CONFIGURATION_BUDGET_CHARS)
        if etag is None:
            current = self.get(kind, name)
            etag = current.etag if current is not None else None
        try:
            if etag is None:
                meta = self.table.create_entity(entity)
            else:
                meta = self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                                match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError) as err:
            raise ApprovalConflict(f"the approved configuration of {kind} connector {name!r} was changed "
                                   "meanwhile; run approve-config again") from err
        return ApprovedConfiguration(kind, name, dict(configuration), now, entity["approvedBy"], entity["reason"],
                                     str(meta.get("etag", "")))

    def by_connector(self) -> dict[str, ApprovedConfiguration]:
        """Every approval by case-folded connector name (what the sweep keys connectors by); where an
        inbound and an outbound connector share a name, the later approval."""
        out: dict[str, ApprovedConfiguration] = {}
        for r in sorted(self.records(), key=lambda r: r.approved_at):
            out[r.name.casefold()] = r
        return out


def approvals_from_json(doc: Any) -> dict[str, dict[str, Any]]:
    """Approvals written as JSON (a list of ``{connector, connectorType, configuration, approvedAt,
    approvedBy, reason}``, or a document holding one as ``approvedConfigurations``, as the simulator's
    labels do) as the grader reads them, by case-folded name. Raises :class:`InputError` naming what is wrong."""
    items = doc.get("approvedConfigurations", []) if isinstance(doc, Mapping) else doc
    if not isinstance(items, list):
        raise InputError("approved configurations: expected a list of approvals")
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items):
        try:
            name, config = str(item["connector"]), item["configuration"]
            approved_at = datetime.fromisoformat(str(item["approvedAt"]).replace("Z", "+00:00"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"approved configuration {i}: {exc!r}; each needs connector, configuration and "
                             "approvedAt (ISO 8601)") from None
        if not isinstance(config, Mapping):
            raise InputError(f"approved configuration {i}: configuration must be an object")
        out[name.casefold()] = {"configuration": {str(k).lower(): str(v) for k, v in config.items()},
                                "approvedAt": approved_at, "approvedBy": str(item.get("approvedBy") or ""),
                                "reason": str(item.get("reason") or "")}
    return out
