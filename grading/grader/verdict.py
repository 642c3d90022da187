"""Findings -> score -> classification: the verdict of one connector.

The policy (:mod:`grading.policy`) weighs the findings into a 0-100 score and the score into a
classification. Incomplete inputs never produce a true positive or a confident false positive:
the verdict is ``unknown`` with the reason.
"""

from __future__ import annotations

from typing import Any

from grading.classification import Classification, Determination
from grading.grader.checks import CHECKS, check_supply_chain
from grading.grader.evidence import connector_evidence, incident_key, json_ready
from grading.grader.facts import ADMIN_COMPROMISE, PHISHING, SEVERITY_ORDER, ConnectorFacts, Finding
from grading.policy import Policy


def grade(facts: ConnectorFacts, policy: Policy) -> dict[str, Any]:
    """The verdict of one connector, as the contract's JSON-ready dict."""
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(facts, policy))
    findings.extend(check_supply_chain(facts, policy, findings))
    findings.sort(key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), -f.weight))
    score = min(100, sum(f.weight for f in findings))
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
            f"and true-positive ({policy.true_positive_score}) thresholds; an analyst should review"
        )
    return {
        "connector": facts.connector,
        "connectorType": facts.connector_type,
        "classification": classification.value,  # the contract's plain string
        "determination": determination.value if determination else None,
        "score": score,
        "findings": [json_ready(f.as_dict()) for f in findings],
        "evidence": connector_evidence(facts),
        "incidentKey": incident_key(facts.connector, facts.history_changes),
        "reasonIfUnknown": reason,
    }
