"""Notifications to a Teams or Slack incoming webhook: every TP incident, every action performed,
held, refused or failed, and every message the runner could not read.

Why: report mode must not be silent, and a held action needs a person to approve it. Both Slack
and Teams incoming webhooks accept ``{"text": ...}``. The text carries attacker-controlled strings
(connector names, UPNs), so each is made printable (:func:`grading.text.safe_text`), stripped of
``& < >`` (Slack's control characters: ``<!channel>`` would page everyone, ``<url|text>`` would
forge a link) and shown inside a code span so neither service renders it as Markdown.

The webhook URL is itself a secret: it never appears in logs, errors or the audit log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from azure.core.pipeline.transport import HttpTransport

from grading.cloud.http import DEFAULT_RETRY, ServiceCallError, ServiceClient
from grading.cloud.retry import RetryConfig
from grading.incident import RemediationMessage
from grading.remediation.actions import PlannedAction
from grading.text import safe_text

SERVICE = "the notification webhook (REMEDIATION_WEBHOOK_URL)"


def inline(value: object, limit: int = 200) -> str:
    """*value* as inert inline text for Slack and Teams."""
    text = safe_text(value, limit)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")
    return f"`{text}`"


@dataclass(frozen=True)
class Line:
    action: PlannedAction
    outcome: str
    detail: str


def incident_text(msg: RemediationMessage, lines: Sequence[Line], *, mode: str) -> str:
    head = (f"Connector grader: true positive on connector {inline(msg.connector)} ({msg.connector_type}), "
            f"score {msg.score}, determination {inline(msg.determination or 'none', 60)}; incident "
            f"{inline(msg.incident_key, 80)}, sweep {inline(msg.sweep_id, 80)}. Mode: {mode}"
            + (" (nothing was changed)." if mode == "report" else "."))
    body = [head]
    findings = msg.evidence_summary.get("findings") or []
    for f in findings[:3]:
        if isinstance(f, dict):
            body.append(f"• finding: {inline(f.get('summary', ''), 200)}")
    for line in lines:
        body.append(f"• {line.outcome}: {line.action.action} {inline(line.action.label or line.action.target, 120)}"
                    f" (id {line.action.action_id}) {inline(line.detail, 300)}")
    if any(line.outcome == "held" for line in lines):
        body.append("Held actions wait for `python -m grading approve ACTION_ID` or `deny ACTION_ID`.")
    return "\n".join(body)


def decision_text(action: PlannedAction, outcome: str, detail: str, *, by: str) -> str:
    return (f"Connector grader: {outcome} by {inline(by, 80)}: {action.action} "
            f"{inline(action.label or action.target, 120)} (id {action.action_id}, incident "
            f"{inline(action.incident_key, 80)}) {inline(detail, 300)}")


def invalid_text(reason: str, *, message_id: str, dequeue_count: int, last: bool) -> str:
    fate = "the host moves it to the poison queue now" if last else "the host retries it"
    return (f"Connector grader: a remediation message could not be read (message {inline(message_id, 80)}, "
            f"try {dequeue_count}): {inline(reason, 300)}; {fate}.")


def refused_text(reason: str, *, message_id: str, incident_key: str) -> str:
    return (f"Connector grader: a remediation message for incident {inline(incident_key, 80)} was refused "
            f"(message {inline(message_id, 80)}): {inline(reason, 400)}. Nothing was done; if no sweep sent it, "
            "someone else can write to the remediation queue.")


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        *,
        retry: RetryConfig = DEFAULT_RETRY,
        transport: HttpTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError("the webhook URL must be https")
        self._url = url
        self._path = parts.path
        self._http = ServiceClient(service=SERVICE, endpoint=f"{parts.scheme}://{parts.netloc}", retry=retry,
                                   transport=transport, sleep=sleep)

    def close(self) -> None:
        self._http.close()

    def _redact(self, text: str) -> str:
        text = text.replace(self._url, "<webhook URL>")
        return text.replace(self._path, "/<webhook path>") if len(self._path) > 1 else text

    def send(self, text: str) -> None:
        """Post *text*; raises :class:`ServiceCallError` (with the URL redacted) when it fails."""
        try:
            response = self._http.send("POST", self._url, body={"text": text})
        except ServiceCallError as err:
            raise ServiceCallError(err.kind, self._redact(str(err)), service=SERVICE) from None
        if not 200 <= response.status_code < 300:
            err = self._http.error(
                response, "posting a notification",
                permission="Check that the incoming webhook still exists and REMEDIATION_WEBHOOK_URL is current.",
                not_found="the webhook no longer exists; create a new incoming webhook and update "
                          "REMEDIATION_WEBHOOK_URL",
            )
            raise ServiceCallError(err.kind, self._redact(str(err)), service=SERVICE, status=err.status)
