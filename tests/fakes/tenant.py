"""Stateful fakes of the Exchange Online admin API, Microsoft Graph and an incoming webhook.

They keep state the way the services do, so ``Get`` reflects a prior ``Set``, a removed connector
is gone, a revoked user's ``signInSessionsValidFromDateTime`` moves, an alert keeps its comments;
they check what the real services check (the bearer token, the Exchange anchor mailbox header,
the tenant in the path) and answer errors in the services' real shapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from azure.core.credentials import AccessToken

from .server import Answer, LoopbackHTTPS, Received

TOKEN = "static-test-token"
TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
ORGANIZATION = "contoso.onmicrosoft.com"
ANCHOR = f"UPN:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{ORGANIZATION}"


class StaticCredential:
    """A TokenCredential returning one static AccessToken (never a real secret)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def cmdlet_error(exception: str, text: str) -> Answer:
    """The admin API's answer to a failing cmdlet: HTTP 500 'Error executing cmdlet'."""
    return Answer(
        500,
        {
            "error": {
                "code": "InternalServerError",
                "message": "Error executing cmdlet",
                "details": [
                    {
                        "code": "Client",
                        "target": "",
                        "message": f"Ex6F9304|Microsoft.Exchange.Configuration.Tasks.{exception}|{text}",
                    }
                ],
                "innererror": {
                    "message": "Error executing cmdlet",
                    "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                },
            }
        },
    )


def graph_error(status: int, code: str, message: str) -> Answer:
    return Answer(
        status,
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": "2026-01-01T00:00:00", "request-id": "fake"},
            }
        },
    )


def _unauthorised(request: Received) -> Answer | None:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return Answer(401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}})
    return None


@dataclass
class FakeExchange:
    """Connectors of one tenant behind ``POST /adminapi/beta/{tenant}/InvokeCommand``."""

    connectors: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Transport rules by case-folded name (Get-/Enable-/Disable-TransportRule)."""
    page_size: int = 1000
    denied: set[str] = field(default_factory=set)
    """Cmdlets the app's role does not allow (answered 403 like a missing role)."""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    origin: str = ""

    def add(
        self,
        kind: str,
        name: str,
        *,
        enabled: bool = True,
        addresses: list[str] | None = None,
        created: datetime | None = None,
        changed: datetime | None = None,
    ) -> None:
        created = created or datetime(2024, 1, 1, tzinfo=UTC)
        item = {
            "Identity": name,
            "Name": name,
            "Enabled": enabled,
            "ConnectorType": "Partner",
            "WhenCreatedUTC": _iso(created),
            "WhenChangedUTC": _iso(changed or created),
            "Guid": f"guid-{len(self.connectors)}",
        }
        item["SenderIPAddresses" if kind == "Inbound" else "SmartHosts"] = list(addresses or [])
        self.connectors[(kind, name.casefold())] = item

    def connector(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.connectors.get((kind, name.casefold()))

    def add_rule(self, name: str, *, enabled: bool = True, **parameters: Any) -> None:
        """A transport rule, as ``Get-TransportRule`` lists it (conditions and actions as *parameters*)."""
        self.rules[name.casefold()] = {"Identity": name, "Name": name, "State": "Enabled" if enabled else "Disabled",
                                       "Priority": len(self.rules), "Guid": f"rule-guid-{len(self.rules)}",
                                       **parameters}

    def _rule(self, verb: str, params: dict[str, Any]) -> Answer:
        identity = params.get("Identity")
        if verb == "Get" and identity is None:
            return Answer(200, {"value": [dict(v) for _, v in sorted(self.rules.items())]})
        item = self.rules.get(str(identity).casefold())
        if item is None:
            return cmdlet_error("ManagementObjectNotFoundException",
                                f"The operation couldn't be performed because object '{identity}' couldn't be found.")
        if verb == "Get":
            return Answer(200, {"value": [dict(item)]})
        if verb in ("Enable", "Disable"):
            item["State"] = "Enabled" if verb == "Enable" else "Disabled"
            return Answer(200, {"value": []})
        unknown = f"the fake does not serve {verb}-TransportRule"
        return Answer(400, {"error": {"code": "BadRequest", "message": unknown}})

    def mutations(self) -> list[tuple[str, dict[str, Any]]]:
        """Set-/Remove- calls that reached the service."""
        return [c for c in self.calls if not c[0].startswith("Get-")]

    def handle(self, request: Received) -> Answer:
        denied = _unauthorised(request)
        if denied:
            return denied
        if request.headers.get("X-AnchorMailbox") != ANCHOR:
            return Answer(400, {"error": {"code": "BadRequest", "message": "missing or wrong X-AnchorMailbox"}})
        if request.method != "POST" or not request.path.startswith(f"/adminapi/beta/{TENANT_ID}/InvokeCommand"):
            return Answer(404, {"error": {"code": "NotFound", "message": "no such tenant or endpoint"}})
        cmdlet = request.body["CmdletInput"]["CmdletName"]
        params = dict(request.body["CmdletInput"].get("Parameters") or {})
        if cmdlet in self.denied:
            return Answer(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "The role assigned to application isn't supported in this scenario",
                    }
                },
            )
        verb, noun = cmdlet.split("-", 1)
        kind = noun.removesuffix("Connector")
        self.calls.append((cmdlet, params))
        if noun == "TransportRule":
            return self._rule(verb, params)
        identity = params.get("Identity")
        if verb == "Get" and identity is None:
            items = [dict(v) for (k, _), v in sorted(self.connectors.items()) if k == kind]
            skip = int(request.query.removeprefix("$skiptoken=") or 0) if request.query else 0
            page = items[skip : skip + self.page_size]
            answer: dict[str, Any] = {"value": page}
            if skip + self.page_size < len(items):
                answer["@odata.nextLink"] = f"{self.origin}{request.path}?$skiptoken={skip + self.page_size}"
            return Answer(200, answer)
        item = self.connector(kind, str(identity))
        if item is None:
            return cmdlet_error(
                "ManagementObjectNotFoundException",
                f"The operation couldn't be performed because "
                f"object '{identity}' couldn't be found on 'FAKE01.PROD.OUTLOOK.COM'.",
            )
        if verb == "Get":
            return Answer(200, {"value": [dict(item)]})
        if verb == "Set":
            for key in ("Enabled", "SenderIPAddresses", "SmartHosts"):
                if key in params:
                    item[key] = params[key]
            item["WhenChangedUTC"] = _iso(datetime.now(UTC))
            return Answer(200, {"value": []})
        if verb == "Remove":
            del self.connectors[(kind, str(identity).casefold())]
            return Answer(200, {"value": []})
        return Answer(400, {"error": {"code": "BadRequest", "message": f"unknown cmdlet {cmdlet}"}})


@dataclass
class FakeGraph:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def add_user(self, object_id: str, upn: str) -> None:
        self.users[object_id] = {
            "id": object_id,
            "userPrincipalName": upn,
            "accountEnabled": True,
            "signInSessionsValidFromDateTime": "2024-01-01T00:00:00Z",
            "passwordProfile": {"forceChangePasswordNextSignIn": False},
        }

    def add_alert(self, alert_id: str) -> None:
        self.alerts[alert_id] = {
            "id": alert_id,
            "classification": None,
            "determination": None,
            "comments": [],
            "status": "new",
        }

    def revocations(self) -> list[str]:
        return [path for method, path in self.calls if path.endswith("/revokeSignInSessions")]

    def mutations(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "GET"]

    def _user(self, ref: str) -> dict[str, Any] | None:
        ref = unquote(ref)
        return self.users.get(ref) or next((u for u in self.users.values() if u["userPrincipalName"] == ref), None)

    def handle(self, request: Received) -> Answer:
        denied = _unauthorised(request)
        if denied:
            return denied
        self.calls.append((request.method, request.path))
        parts = request.path.removeprefix("/v1.0/").split("/")
        if parts[0] == "users" and len(parts) >= 2:
            user = self._user(parts[1])
            if user is None:
                return graph_error(404, "Request_ResourceNotFound", f"Resource '{unquote(parts[1])}' does not exist")
            if len(parts) == 3 and parts[2] == "revokeSignInSessions" and request.method == "POST":
                user["signInSessionsValidFromDateTime"] = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
                return Answer(
                    200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": True}
                )
            if len(parts) == 2 and request.method == "GET":
                return Answer(200, {k: v for k, v in user.items() if k != "passwordProfile"})
            if len(parts) == 2 and request.method == "PATCH":
                if "accountEnabled" in request.body:
                    user["accountEnabled"] = request.body["accountEnabled"]
                if "passwordProfile" in request.body:
                    user["passwordProfile"].update(request.body["passwordProfile"])
                return Answer(204)
        if parts[:2] == ["security", "alerts_v2"] and len(parts) >= 3:
            alert = self.alerts.get(unquote(parts[2]))
            if alert is None:
                return graph_error(404, "NotFound", "alert not found")
            if len(parts) == 3 and request.method == "GET":
                return Answer(200, alert)
            if len(parts) == 3 and request.method == "PATCH":
                alert.update(
                    {k: request.body[k] for k in ("classification", "determination", "status") if k in request.body}
                )
                return Answer(200, alert)
            if len(parts) == 4 and parts[3] == "comments" and request.method == "POST":
                alert["comments"].append(
                    {
                        "comment": request.body["comment"],
                        "createdByDisplayName": "app",
                        "createdDateTime": datetime.now(UTC).isoformat(),
                    }
                )
                return Answer(200, {"value": alert["comments"]})
        return graph_error(400, "BadRequest", f"unsupported {request.method} {request.path}")


@dataclass
class FakeWebhook:
    posts: list[dict[str, Any]] = field(default_factory=list)

    def handle(self, request: Received) -> Answer:
        self.posts.append(request.body)
        return Answer(200, None)

    def texts(self) -> list[str]:
        return [p["text"] for p in self.posts]


WEBHOOK_PATH = "/webhookb2/secret-part-of-the-url"


@dataclass
class FakeTenant:
    server: LoopbackHTTPS
    exchange: FakeExchange
    graph: FakeGraph
    webhook: FakeWebhook

    @property
    def webhook_url(self) -> str:
        return self.server.origin + WEBHOOK_PATH


def install(server: LoopbackHTTPS) -> FakeTenant:
    tenant = FakeTenant(server, FakeExchange(origin=server.origin), FakeGraph(), FakeWebhook())
    server.route("/adminapi/", tenant.exchange.handle)
    server.route("/v1.0/", tenant.graph.handle)
    server.route(WEBHOOK_PATH, tenant.webhook.handle)
    return tenant
