"""Exchange Online connectors through the admin REST endpoint ``InvokeCommand``.

UNDOCUMENTED ENDPOINT. Microsoft offers no documented API (Graph or other) to disable or change
an Exchange Online connector. ``POST {endpoint}/adminapi/beta/{tenant}/InvokeCommand`` is the
REST endpoint the ExchangeOnlineManagement PowerShell module itself calls, and public tools
(ScubaGear, CIPP, Monkey365, the untitled goose tool) call it directly; Microsoft does not support
that use and may change it without notice. Everything that depends on it is in this one small
class so it can be swapped (for the PowerShell module in a PowerShell function, or a documented
API when one appears) without touching the runner: the runner only needs
:meth:`ExchangeClient.get_connector`, :meth:`set_connector`, :meth:`remove_connector` and
:meth:`list_connectors`.

What this client relies on (docs/architecture.md, "Services and their limits"):
token scope ``{endpoint}/.default`` with the app role Exchange.ManageAsApp and an Exchange admin
role; body ``{"CmdletInput": {"CmdletName", "Parameters"}}``; header ``X-AnchorMailbox:
UPN:SystemMailbox{bb558c35-...}@<initial domain>`` for app-only calls; answer ``{"value": [...],
"@odata.nextLink"}`` (the public clients send the same POST to the next link); cmdlet errors as
``error.details[].message`` such as ``Ex6F9304|Microsoft.Exchange...ManagementObjectNotFoundException|
The operation couldn't be performed because object 'x' couldn't be found``, often under HTTP 500.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpResponse

from grading.cloud.http import DEFAULT_RETRY, ErrorKind, ServiceCallError, ServiceClient, json_of
from grading.cloud.responses import leaf_messages, parse_datetime
from grading.cloud.retry import RetryConfig

SERVICE = "Exchange Online"
APP_ROLE = "Exchange.ManageAsApp"
SYSTEM_MAILBOX = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}"
PERMISSION_FIX = (
    f"Grant the app's identity the Office 365 Exchange Online application permission {APP_ROLE} (admin "
    "consent) and assign it an Exchange role that manages connectors (Exchange Administrator, or a role "
    "group with the Remote and Accepted Domains role)"
)
KINDS = ("Inbound", "Outbound")
# Only the cmdlets this app needs: a bug elsewhere cannot turn this client into a general shell.
ALLOWED_CMDLETS = frozenset(f"{verb}-{kind}Connector" for verb in ("Get", "Set", "Remove") for kind in KINDS) | {
    "Get-TransportRule", "Disable-TransportRule", "Enable-TransportRule"}
"""Exactly the cmdlets infra/grant-permissions.ps1 grants: never New-/Set-/Remove-TransportRule."""
MAX_PAGES = 50

_CMDLET_ERROR = re.compile(r"^[A-Za-z0-9]+\|(Microsoft\.Exchange\.[\w.]+?)\|(.*)$", re.DOTALL)
_NOT_FOUND = re.compile(r"ManagementObjectNotFoundException|couldn't be found|could not be found", re.IGNORECASE)
_DENIED = re.compile(
    r"AccessDenied|access is denied|isn't authorized|not authorized|does not have permission|"
    r"doesn't have permission|write scope|role assigned to application",
    re.IGNORECASE,
)
_DOTNET_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")


@dataclass(frozen=True)
class Connector:
    """One inbound or outbound connector as ``Get-…Connector`` returns it (fields the app uses)."""

    kind: str
    name: str
    identity: str
    enabled: bool
    connector_type: str | None = None
    sender_ip_addresses: tuple[str, ...] = ()
    smart_hosts: tuple[str, ...] = ()
    when_created: datetime | None = None
    when_changed: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def addresses(self) -> tuple[str, ...]:
        """What an attacker changes to relay through the connector: the inbound connector's
        SenderIPAddresses or the outbound connector's SmartHosts."""
        return self.sender_ip_addresses if self.kind == "Inbound" else self.smart_hosts

    @staticmethod
    def address_parameter(kind: str) -> str:
        return "SenderIPAddresses" if kind == "Inbound" else "SmartHosts"


def _as_list(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value if v not in (None, ""))
    return (str(value),)


def parse_exchange_time(value: Any) -> datetime | None:
    """An Exchange timestamp: ISO 8601, or the .NET ``/Date(ms)/`` form some answers use."""
    if not isinstance(value, str) or not value:
        return None
    m = _DOTNET_DATE.match(value)
    if m:
        return datetime.fromtimestamp(int(m.group(1)) / 1000, tz=UTC)
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def connector_from(kind: str, item: Mapping[str, Any]) -> Connector:
    enabled = item.get("Enabled")
    return Connector(
        kind=kind,
        name=str(item.get("Name") or item.get("Identity") or ""),
        identity=str(item.get("Identity") or item.get("Name") or ""),
        enabled=enabled is True or (isinstance(enabled, str) and enabled.lower() == "true"),
        connector_type=item.get("ConnectorType"),
        sender_ip_addresses=_as_list(item.get("SenderIPAddresses")),
        smart_hosts=_as_list(item.get("SmartHosts")),
        when_created=parse_exchange_time(item.get("WhenCreatedUTC") or item.get("WhenCreated")),
        when_changed=parse_exchange_time(item.get("WhenChangedUTC") or item.get("WhenChanged")),
        raw=dict(item),
    )


def _cmdlet_messages(body: Any) -> list[str]:
    return [m for m in leaf_messages(body) if m]


def is_cmdlet_error(response: HttpResponse) -> bool:
    """A cmdlet's own failure (unknown object, bad parameter, denied): retrying cannot change it."""
    body = json_of(response)
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    details = body["error"].get("details") or []
    if any(isinstance(d, dict) and d.get("code") == "Client" for d in details):
        return True
    return any(_CMDLET_ERROR.match(m) for m in _cmdlet_messages(body))


def readable(message: str) -> str:
    """``Ex6F9304|Microsoft.Exchange.X.YException|text`` -> ``YException: text``."""
    m = _CMDLET_ERROR.match(message)
    return f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2).strip()}" if m else message


class ExchangeClient:
    """Runs the connector cmdlets through ``InvokeCommand`` (see the module docstring's warning)."""

    def __init__(
        self,
        credential: Any,
        *,
        tenant_id: str,
        organization_domain: str,
        endpoint: str = "https://outlook.office365.com",
        retry: RetryConfig = DEFAULT_RETRY,
        transport: HttpTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if credential is None:
            raise ValueError("the Exchange client needs a TokenCredential (DefaultAzureCredential in Azure)")
        self.tenant_id = tenant_id
        self.organization_domain = organization_domain
        self.endpoint = endpoint.rstrip("/")
        self._http = ServiceClient(
            service=SERVICE, endpoint=self.endpoint, credential=credential, scope=f"{self.endpoint}/.default",
            retry=retry, transport=transport, is_permanent=is_cmdlet_error, sleep=sleep,
        )
        self._url = f"{self.endpoint}/adminapi/beta/{quote(tenant_id, safe='')}/InvokeCommand"

    def close(self) -> None:
        self._http.close()

    # -- the one call ---------------------------------------------------------------------------

    def invoke(self, cmdlet: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run *cmdlet* with *parameters*; every page of its output. Raises :class:`ServiceCallError`."""
        if cmdlet not in ALLOWED_CMDLETS:
            raise ValueError(f"{cmdlet} is not a cmdlet this app runs")
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": dict(parameters)}}
        headers = {
            "X-AnchorMailbox": f"UPN:{SYSTEM_MAILBOX}@{self.organization_domain}",
            "Prefer": "odata.maxpagesize=1000",
            "client-request-id": str(uuid.uuid4()),
        }
        out: list[dict[str, Any]] = []
        url: str | None = self._url
        for _page in range(MAX_PAGES):
            assert url is not None
            response = self._http.send("POST", url, body=body, headers=headers)
            if not 200 <= response.status_code < 300:
                raise self._error(response, cmdlet, parameters)
            answer = json_of(response)
            if not isinstance(answer, dict):
                if response.status_code == 204 or not (response.text() or "").strip():
                    return out  # Set-/Remove- may answer with no body at all
                raise ServiceCallError(ErrorKind.BAD_REQUEST, f"{SERVICE} answered {cmdlet} with something other "
                                   "than JSON; the undocumented endpoint may have changed", service=SERVICE)
            out.extend(v for v in answer.get("value") or [] if isinstance(v, dict))
            url = answer.get("@odata.nextLink")
            if not url:
                return out
            if not isinstance(url, str) or not url.startswith(self.endpoint + "/adminapi/"):
                # The bearer token must never be sent to a host the answer names.
                raise ServiceCallError(ErrorKind.BAD_REQUEST, f"{SERVICE} answered {cmdlet} with a next link "
                                   "outside the admin API; refusing to follow it", service=SERVICE)
        raise ServiceCallError(ErrorKind.BAD_REQUEST, f"{cmdlet} returned more than {MAX_PAGES} pages",
                           service=SERVICE)

    def _error(self, response: HttpResponse, cmdlet: str, parameters: Mapping[str, Any]) -> ServiceCallError:
        messages = [readable(m) for m in _cmdlet_messages(json_of(response))]
        joined = " / ".join(messages)
        identity = parameters.get("Identity")
        what = f"{cmdlet} -Identity {identity!r}" if identity is not None else cmdlet
        if _NOT_FOUND.search(joined) and response.status_code not in (401, 403, 429):
            return ServiceCallError(
                ErrorKind.NOT_FOUND,
                f"{what}: no such connector in Exchange Online (renamed or removed since the sweep?). Check "
                f"the name with Get-{cmdlet.split('-', 1)[1]}. Exchange said: {joined}",
                service=SERVICE, status=response.status_code,
            )
        if _DENIED.search(joined) and response.status_code not in (401, 429):
            return ServiceCallError(
                ErrorKind.PERMISSION,
                f"Exchange Online refused {what} for {self._http.who()}: missing permission or role. "
                f"{PERMISSION_FIX}. Exchange said: {joined}",
                service=SERVICE, status=response.status_code,
            )
        if is_cmdlet_error(response):
            return ServiceCallError(ErrorKind.BAD_REQUEST, f"{what} failed: {joined}", service=SERVICE,
                                status=response.status_code)
        return self._http.error(
            response, what, permission=PERMISSION_FIX,
            not_found=f"{SERVICE} has no admin API for tenant {self.tenant_id!r}; check EXCHANGE_TENANT_ID",
        )

    # -- connectors -----------------------------------------------------------------------------

    @staticmethod
    def _kind(kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"connector kind must be Inbound or Outbound, not {kind!r}")
        return kind

    def list_connectors(self, kind: str) -> list[Connector]:
        """Every connector of *kind* (the read-only inventory refresh)."""
        return [connector_from(kind, item) for item in self.invoke(f"Get-{self._kind(kind)}Connector", {})]

    def get_connector(self, kind: str, name: str) -> Connector | None:
        """The connector of *kind* named *name*, or None when Exchange has no such connector."""
        try:
            items = self.invoke(f"Get-{self._kind(kind)}Connector", {"Identity": name})
        except ServiceCallError as err:
            if err.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return connector_from(kind, items[0]) if items else None

    def find_connector(self, name: str) -> list[Connector]:
        """Connectors named *name* of either kind (a message may say ``Unknown``)."""
        return [c for kind in KINDS if (c := self.get_connector(kind, name)) is not None]

    def set_connector(self, kind: str, name: str, **parameters: Any) -> None:
        """``Set-…Connector -Identity name`` with *parameters* (e.g. ``Enabled=False``)."""
        if not parameters:
            raise ValueError("nothing to set")
        self.invoke(f"Set-{self._kind(kind)}Connector", {"Identity": name, **parameters})

    def remove_connector(self, kind: str, name: str) -> None:
        self.invoke(f"Remove-{self._kind(kind)}Connector", {"Identity": name, "Confirm": False})

    # -- transport (mail-flow) rules: read, disable, re-enable; never created, changed or removed here --

    def list_transport_rules(self) -> list[dict[str, Any]]:
        """Every transport rule as ``Get-TransportRule`` returns it (``Name``, ``State``, conditions, actions)."""
        return self.invoke("Get-TransportRule", {})

    def get_transport_rule(self, name: str) -> dict[str, Any] | None:
        try:
            items = self.invoke("Get-TransportRule", {"Identity": name})
        except ServiceCallError as err:
            if err.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return items[0] if items else None

    def set_transport_rule_enabled(self, name: str, enabled: bool) -> None:
        """``Enable-TransportRule`` or ``Disable-TransportRule -Confirm:$false``."""
        if enabled:
            self.invoke("Enable-TransportRule", {"Identity": name})
        else:
            self.invoke("Disable-TransportRule", {"Identity": name, "Confirm": False})


def rule_enabled(rule: Mapping[str, Any]) -> bool:
    """Whether a ``Get-TransportRule`` item is in force (``State`` Enabled)."""
    return str(rule.get("State") or "").strip().lower() == "enabled"
