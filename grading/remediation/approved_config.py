"""Approving a connector's configuration from the inventory, and listing drift from what was approved.

Why from the inventory: what is approved must be what Exchange holds (``Get-...Connector``), not what an
operator types or a message carries; the inventory is that snapshot (:mod:`grading.remediation.inventory`).
Drift is read with the grader's own configuration semantics (:func:`grading.grader.configuration.drift`
and :func:`~grading.grader.configuration.assess`), so ``drift`` and a sweep never disagree on what moved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from grading.errors import InputError
from grading.grader.configuration import assess, drift, split_list
from grading.incident import RemediationMessage
from grading.policy import Policy
from grading.remediation.exchange import KINDS, Connector
from grading.remediation.inventory import ConnectorInventory, InventoryRecord
from grading.storage.approved import ApprovedConfiguration, ApprovedConfigurations


@dataclass(frozen=True)
class Drift:
    approval: ApprovedConfiguration
    current: InventoryRecord | None
    rows: list[dict[str, Any]]
    """Each: parameter, before (approved), after (current)."""
    risks: list[dict[str, Any]]
    source: str = "inventory"
    """Where the current configuration came from: the inventory, or the latest sweep (recent changes)."""

    def as_json(self) -> dict[str, Any]:
        return {"connector": self.approval.name, "connectorType": self.approval.kind,
                "approvedBy": self.approval.approved_by, "approvedAt": self.approval.approved_at.isoformat(),
                "reason": self.approval.reason, "present": bool(self.current and self.current.present),
                "source": self.source, "drift": self.rows,
                "risks": [{"kind": r["kind"], "act": r["act"], "detail": r["detail"]} for r in self.risks]}


def approve(inventory: ConnectorInventory, approvals: ApprovedConfigurations, names: list[str] | None, *,
            by: str, reason: str, now: datetime) -> list[ApprovedConfiguration]:
    """Approve the inventory's configuration of each connector in *names* (every present one for None)."""
    records = [r for r in inventory.records() if r.present]
    if names is None:
        chosen = records
    else:
        chosen = []
        for name in names:
            found = [r for r in records if r.name.casefold() == name.casefold()]
            if not found:
                raise InputError(f"no connector named {name!r} in the inventory: run `python -m grading inventory` "
                                 "first, or check the name")
            chosen.extend(found)
    out = []
    for r in chosen:
        if not r.configuration:
            raise InputError(f"the inventory holds no configuration of {r.kind} connector {r.name!r} (a snapshot "
                             "older than approvals): run `python -m grading inventory` again")
        out.append(approvals.approve(r.kind, r.name, r.configuration, by=by, reason=reason, now=now))
    return out


LatestVerdict = Callable[[str], "dict[str, Any] | None"]


def drifted(inventory: ConnectorInventory, approvals: ApprovedConfigurations,
            policy: Policy | None = None, latest: LatestVerdict | None = None) -> list[Drift]:
    """Every approved connector whose inventory differs from its approval (or that is gone), property by property;
    with *latest* (the connector's latest stored verdict), also one whose recent changes, as the last sweep read
    them after the approval, drifted while the inventory has not caught up yet."""
    policy = policy or Policy()
    out = []
    for a in approvals.records():
        swept = _swept_drift(a, latest(a.name) if latest is not None else None, inventory.get(a.kind, a.name))
        current = inventory.get(a.kind, a.name)
        if current is None or not current.present:
            out.append(Drift(a, current, [], [{"kind": "removed", "act": False,
                                               "detail": "the connector is no longer in the inventory"}]))
            continue
        d = drift(a.configuration, current.configuration)
        if not d.changed:
            if swept is not None:
                out.append(swept)
            continue
        assess(d, known_domains=set(), known_ips=set(), other_connectors=[],
               broad_prefix_v4=policy.broad_sender_prefix, broad_addresses=policy.broad_sender_addresses)
        out.append(Drift(a, current, d.as_rows(), d.risks))
    return out


def _swept_drift(approval: ApprovedConfiguration, verdict: dict[str, Any] | None,
                 current: InventoryRecord | None) -> Drift | None:
    """The drift the latest sweep found (its ``approvedConfiguration`` evidence), if it judged this approval."""
    if not verdict:
        return None
    evidence = (verdict.get("evidence") or {}).get("approvedConfiguration") or {}
    rows = evidence.get("drift") or []
    if not rows or str(evidence.get("approvedAt") or "")[:19] != approval.approved_at.isoformat()[:19]:
        return None
    risks = [{"kind": k, "act": f.get("kind") == "maliciousAct", "detail": f.get("summary", "")}
             for f in verdict.get("findings") or () if f.get("rule") == "approved_drift"
             for k in (f.get("evidence") or {}).get("risks") or ()]
    return Drift(approval, current, rows, risks, source="latest sweep")


def approved_addresses(approvals: ApprovedConfigurations,
                       msg: RemediationMessage) -> tuple[str, tuple[str, ...], str] | None:
    """What a revert restores when the connector has an approved configuration: its approved addresses
    (SenderIPAddresses or SmartHosts), from the table, never from the message. None without an approval
    that records them (the runner then falls back on the inventory snapshot before the change)."""
    kinds = KINDS if msg.connector_type == "Unknown" else (msg.connector_type,)
    for kind in kinds:
        approval = approvals.get(kind, msg.connector)
        if approval is None:
            continue
        parameter = Connector.address_parameter(kind)
        values = split_list(approval.configuration.get(parameter.lower(), ""))
        if values:
            return (parameter, tuple(values),
                    f"the approved configuration (by {approval.approved_by}, {approval.approved_at:%Y-%m-%d %H:%M}Z)")
    return None
