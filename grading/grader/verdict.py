"""Findings -> score -> classification: the verdict of one connector.

The policy (:mod:`grading.policy`) weighs the findings into a 0-100 score and the score into a
classification, under the decision rule of ``docs/decision-rule.md``: a truePositive needs a finding of a
malicious act (abusive traffic, or a dangerous configuration change); context alone is capped below the
true-positive threshold; a benign explanation found in the data lowers the score; the first finding of a
truePositive is its decisive act; ``unknown`` says which evidence would decide. Incomplete inputs never
produce a true positive or a confident false positive: the verdict is ``unknown`` with the reason.
"""

from __future__ import annotations

from typing import Any

from grading.classification import Classification, Determination
from grading.grader.checks import CHECKS, approved_drift, config_diffs, linked_rules, rule_evidence
from grading.grader.evidence import connector_evidence, incident_key, json_ready
from grading.grader.facts import ADMIN_COMPROMISE, PHISHING, SEVERITY_ORDER, ConnectorFacts, Finding, admin_name
from grading.policy import Policy


def grade(facts: ConnectorFacts, policy: Policy) -> dict[str, Any]:
    """The verdict of one connector, as the contract's JSON-ready dict."""
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(facts, policy))
    # Malicious acts first (the strongest is the decisive one), then context by severity, benign last.
    findings.sort(key=lambda f: (0 if f.act else 2 if f.benign else 1, SEVERITY_ORDER.get(f.severity, 9), -f.weight))
    acts = [f for f in findings if f.act]
    raised = sum(f.weight for f in findings if not f.benign)
    lowered = sum(f.weight for f in findings if f.benign)
    score = max(0, min(100, raised - lowered))
    context_capped = not acts and score > policy.context_only_max_score
    if context_capped:
        score = policy.context_only_max_score
    tags = set().union(*(f.tags for f in findings)) if findings else set()

    classification: Classification
    determination: Determination | None = None
    reason: str | None = None
    if facts.incomplete:
        classification = Classification.UNKNOWN
        reason = "incomplete data: " + "; ".join(f"{k}: {v}" for k, v in sorted(facts.incomplete.items()))
    elif score >= policy.true_positive_score and not facts.baseline.exists and not facts.history_changes:
        # Nothing dates this connector (no change in the history) and it has no traffic history: a quiet
        # long-standing connector (a monthly newsletter) cannot be told from a new one.
        classification = Classification.UNKNOWN
        reason = (f"score {score}, but the connector has no traffic history and no known creation or change "
                  "to compare with: an analyst should review")
    elif score >= policy.true_positive_score:
        classification = Classification.TRUE_POSITIVE
        if ADMIN_COMPROMISE in tags:
            determination = Determination.COMPROMISED_ACCOUNT
        elif PHISHING in tags:
            determination = Determination.PHISHING
        else:
            determination = Determination.MALICIOUS_USER_ACTIVITY
    elif score < policy.false_positive_score:
        # A recent change with nothing suspicious about it is benign activity worth telling; a
        # connector that only carried mail is simply not malicious.
        classification = Classification.INFORMATIONAL if facts.changes else Classification.FALSE_POSITIVE
    else:
        classification = Classification.UNKNOWN
        reason = (
            f"inconclusive: score {score} is between the false-positive ({policy.false_positive_score}) "
            f"and true-positive ({policy.true_positive_score}) thresholds"
            + (f" (context only, capped from {raised - lowered}: no malicious act was seen)" if context_capped else "")
            + "; " + _what_would_decide(facts, findings)
        )
    return {
        "connector": facts.connector,
        "connectorType": facts.connector_type,
        "classification": classification.value,  # the contract's plain string
        "determination": determination.value if determination else None,
        "score": score,
        "findings": [json_ready(f.as_dict()) for f in findings],
        "evidence": {**connector_evidence(facts), **json_ready(configuration_evidence(facts, policy))},
        "incidentKey": incident_key(facts.connector, facts.history_changes),
        "reasonIfUnknown": reason,
        # Added fields: the finding that decided a truePositive, and the count of each kind of finding.
        "decisiveAct": json_ready(acts[0].as_dict()) if acts and classification is Classification.TRUE_POSITIVE
        else None,
        "scoreParts": {"raised": raised, "loweredByBenignExplanations": lowered, "maliciousActs": len(acts)},
    }


def configuration_evidence(facts: ConnectorFacts, policy: Policy) -> dict[str, Any]:
    """Added evidence: each change of the lookback as before -> after with what about it is risky, and the
    names the connector had before a rename."""
    return {
        "configurationDiff": [
            {
                "time": d.change["Timestamp"],
                "operation": d.change["Operation"],
                "actionType": d.change.get("ActionType"),
                "by": admin_name(facts, d.change),
                "changes": d.as_rows(),
                "risks": [{"kind": r["kind"], "maliciousAct": bool(r["act"]), "detail": r["detail"]} for r in d.risks],
                "cosmetic": d.cosmetic,
            }
            for d in config_diffs(facts, policy)
        ],
        "previousNames": list(facts.previous_names),
        **({"transportRules": [rule_evidence(facts, x["rule"], x["link"]) for x in linked_rules(facts)]}
           if facts.transport_rules else {}),
        **({"approvedConfiguration": _approval_evidence(facts, policy)} if facts.approved else {}),
    }


def _approval_evidence(facts: ConnectorFacts, policy: Policy) -> dict[str, Any]:
    """Approved -> current for the report: who approved, why, and each property that drifted."""
    approval = facts.approved or {}
    d = approved_drift(facts, policy)
    return {"approvedBy": approval.get("approvedBy"), "approvedAt": approval.get("approvedAt"),
            "reason": approval.get("reason"), "drift": d.as_rows() if d is not None else []}


def _what_would_decide(facts: ConnectorFacts, findings: list[Finding]) -> str:
    """The evidence an analyst should look for to settle an unknown verdict."""
    wanted = []
    acts = [f for f in findings if f.act]
    if not acts:
        if not facts.window_rows:
            wanted.append("mail through the connector (none in the window: what it relays would show abuse)")
        else:
            wanted.append("abusive traffic (forged senders, spray, threats, mail to correspondents) or a dangerous "
                          "setting in its configuration; none was seen")
        if facts.changes and facts.config_snapshot is None and facts.created is None:
            wanted.append("the connector's configuration before and after the change (an inventory)")
    else:
        wanted.append(f"whether the {acts[0].name.replace('_', ' ')} seen is the connector's purpose or abuse: "
                      "the connector owner's or the admin's confirmation, or more of its mail")
    if any(f.check == "adminCompromise" or f.evidence.get("countries") for f in findings):
        wanted.append("the admin's sign-ins (MFA, device, risk) around the change, or the admin's confirmation")
    for check, why in sorted(facts.not_checked.items()):
        wanted.append(f"{check} ({why})")
    return "what would decide: " + "; ".join(wanted or ["an analyst's review of the findings"])
