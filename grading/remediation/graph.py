"""Microsoft Graph calls of the remediation: a compromised admin's sessions and account, and the
write-back of the verdict to the linked Defender alerts.

Why each call has a read-back: the runner must be able to tell, after a crash between an action
and its record, whether the action took effect, so it never acts twice. Graph gives that for all
of them: ``signInSessionsValidFromDateTime`` moves when sessions are revoked, ``accountEnabled``
when an account is disabled, and an alert shows its classification and comments.

Documented endpoints (v1.0): ``POST /users/{id}/revokeSignInSessions`` (User.RevokeSessions.All),
``PATCH /users/{id}`` (``accountEnabled``: User.EnableDisableAccount.All; ``passwordProfile``:
User-PasswordProfile.ReadWrite.All), ``PATCH /security/alerts_v2/{id}`` and ``POST
/security/alerts_v2/{id}/comments`` (SecurityAlert.ReadWrite.All). Acting on an *admin* account
also needs an Entra role allowed to manage that admin (e.g. Privileged Authentication Administrator).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from azure.core.pipeline.transport import HttpTransport

from grading.cloud.http import DEFAULT_RETRY, ErrorKind, ServiceCallError, ServiceClient, json_of
from grading.cloud.responses import parse_datetime
from grading.cloud.retry import RetryConfig

SERVICE = "Microsoft Graph"
ADMIN_ROLE_FIX = "and, because the account is an admin, an Entra role allowed to manage it (Privileged " \
    "Authentication Administrator)"
REVOKE_FIX = f"Grant the app's identity the Graph application permission User.RevokeSessions.All {ADMIN_ROLE_FIX}"
DISABLE_FIX = f"Grant the app's identity User.EnableDisableAccount.All and User.Read.All {ADMIN_ROLE_FIX}"
PASSWORD_FIX = f"Grant the app's identity User-PasswordProfile.ReadWrite.All {ADMIN_ROLE_FIX}"
READ_USER_FIX = "Grant the app's identity the Graph application permission User.Read.All"
ALERT_FIX = "Grant the app's identity the Graph application permission SecurityAlert.ReadWrite.All"

ALERT_DETERMINATIONS = frozenset({
    "unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware", "other",
    "multiStagedAttack", "compromisedAccount", "phishing", "maliciousUserActivity", "notMalicious",
    "notEnoughDataToValidate", "confirmedUserActivity", "lineOfBusinessApplication",
})
"""Graph's ``alertDetermination`` values; a determination outside them is written as ``other``."""


def _segment(value: str) -> str:
    """One URL path segment: ids and UPNs come from telemetry, so nothing in them may add a path."""
    if not value:
        raise ValueError("empty id")
    return quote(value, safe="@")


class GraphClient:
    def __init__(
        self,
        credential: Any,
        *,
        endpoint: str = "https://graph.microsoft.com",
        retry: RetryConfig = DEFAULT_RETRY,
        transport: HttpTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if credential is None:
            raise ValueError("the Graph client needs a TokenCredential (DefaultAzureCredential in Azure)")
        self.endpoint = endpoint.rstrip("/")
        self._http = ServiceClient(
            service=SERVICE, endpoint=self.endpoint, credential=credential, scope=f"{self.endpoint}/.default",
            retry=retry, transport=transport, sleep=sleep,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, what: str, *, permission: str, not_found: str,
              body: Any = None) -> Any:
        response = self._http.send(method, f"{self.endpoint}/v1.0{path}", body=body)
        if not 200 <= response.status_code < 300:
            raise self._http.error(response, what, permission=permission, not_found=not_found)
        return json_of(response)

    # -- users ------------------------------------------------------------------------------------

    def get_user(self, user: str) -> dict[str, Any]:
        """``id``, ``userPrincipalName``, ``accountEnabled``, ``signInSessionsValidFromDateTime``."""
        select = "id,userPrincipalName,accountEnabled,signInSessionsValidFromDateTime"
        answer = self._call("GET", f"/users/{_segment(user)}?$select={select}", f"reading user {user}",
                            permission=READ_USER_FIX, not_found=f"no user {user!r} in the tenant")
        if not isinstance(answer, dict):
            raise ServiceCallError(ErrorKind.BAD_REQUEST, f"{SERVICE} answered reading user {user} without JSON",
                               service=SERVICE)
        return answer

    def sessions_valid_from(self, user: str) -> datetime | None:
        value = self.get_user(user).get("signInSessionsValidFromDateTime")
        return parse_datetime(value) if isinstance(value, str) and value else None

    def revoke_sign_in_sessions(self, user: str) -> None:
        self._call("POST", f"/users/{_segment(user)}/revokeSignInSessions", f"revokeSignInSessions for {user}",
                   permission=REVOKE_FIX, not_found=f"no user {user!r} in the tenant")

    def disable_account(self, user: str) -> None:
        self._call("PATCH", f"/users/{_segment(user)}", f"disabling account {user}", permission=DISABLE_FIX,
                   not_found=f"no user {user!r} in the tenant", body={"accountEnabled": False})

    def enable_account(self, user: str) -> None:
        self._call("PATCH", f"/users/{_segment(user)}", f"enabling account {user}", permission=DISABLE_FIX,
                   not_found=f"no user {user!r} in the tenant", body={"accountEnabled": True})

    def require_password_change(self, user: str) -> None:
        self._call("PATCH", f"/users/{_segment(user)}", f"requiring a password change of {user}",
                   permission=PASSWORD_FIX, not_found=f"no user {user!r} in the tenant",
                   body={"passwordProfile": {"forceChangePasswordNextSignIn": True}})

    # -- alerts -----------------------------------------------------------------------------------

    def get_alert(self, alert_id: str) -> dict[str, Any]:
        answer = self._call("GET", f"/security/alerts_v2/{_segment(alert_id)}", f"reading alert {alert_id}",
                            permission=ALERT_FIX, not_found=f"no Defender alert {alert_id!r}")
        if not isinstance(answer, dict):
            raise ServiceCallError(ErrorKind.BAD_REQUEST, f"{SERVICE} answered reading alert {alert_id} without JSON",
                               service=SERVICE)
        return answer

    def classify_alert(self, alert_id: str, *, classification: str, determination: str | None) -> None:
        body: dict[str, Any] = {"classification": classification}
        if determination is not None:
            body["determination"] = determination if determination in ALERT_DETERMINATIONS else "other"
        self._call("PATCH", f"/security/alerts_v2/{_segment(alert_id)}", f"classifying alert {alert_id}",
                   permission=ALERT_FIX, not_found=f"no Defender alert {alert_id!r}", body=body)

    def comment_alert(self, alert_id: str, comment: str) -> None:
        self._call("POST", f"/security/alerts_v2/{_segment(alert_id)}/comments", f"commenting alert {alert_id}",
                   permission=ALERT_FIX, not_found=f"no Defender alert {alert_id!r}",
                   body={"@odata.type": "microsoft.graph.security.alertComment", "comment": comment})
