"""Signing in to a customer's tenant without a secret: the credential for one registered tenant.

Why not DefaultAzureCredential: the app's managed identity lives in the deployment's own tenant and
gets tokens only there. Microsoft's documented way across tenants without a secret is a
*multi-tenant app registration* whose federated identity credential is that managed identity
(issuer ``https://login.microsoftonline.com/<home tenant>/v2.0``, subject the identity's object id,
audience ``api://AzureADTokenExchange``): the identity gets a token for that audience, and the app
presents it as its client assertion to the customer's tenant, which has consented to the app
(docs/operations.md, "Onboarding a customer tenant"). azure-identity's ClientAssertionCredential
does the exchange; this module only builds it.

Three kinds, as the tenant registry names them (:data:`grading.storage.tenants.CREDENTIALS`):

* ``federated``: the above, with TENANT_APP_CLIENT_ID as the app;
* ``certificate``: an app registration's certificate (PEM), held in an app setting that is a Key
  Vault reference, for a customer who will not consent to the shared app;
* ``home``: the app's own identity, for its own tenant or a Log Analytics workspace delegated to it
  through Azure Lighthouse (Lighthouse projects the customer's resources into the managing tenant,
  so no cross-tenant sign-in is involved).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from grading.errors import ConfigurationError

TOKEN_EXCHANGE_AUDIENCES = {
    "https://login.microsoftonline.com": "api://AzureADTokenExchange",
    "https://login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
    "https://login.chinacloudapi.cn": "api://AzureADTokenExchangeChina",
}
"""The audience a managed identity's token must carry to be accepted as a federated credential,
per Entra authority (public, US Government, China)."""


class TenantCredentialError(ConfigurationError):
    """A tenant's credential cannot be built as configured; the message says what to set."""


class ManagedIdentityAssertion:
    """The client assertion of the multi-tenant app: a token of the app's managed identity for the
    token-exchange audience (fetched on each call; the identity endpoint caches it)."""

    def __init__(self, managed_identity: Any, audience: str = TOKEN_EXCHANGE_AUDIENCES[
            "https://login.microsoftonline.com"]) -> None:
        self.managed_identity = managed_identity
        self.audience = audience

    def __call__(self) -> str:
        return str(self.managed_identity.get_token(f"{self.audience}/.default").token)


class TenantCredentials:
    """Builds (and keeps, for their token caches) one credential per tenant and kind.

    *managed_identity* is the app's identity (a ManagedIdentityCredential, built on first use when
    not given); *assertion_credential* and *certificate_credential* build the azure-identity
    credentials and are replaced in tests, which never reach Entra."""

    def __init__(
        self,
        *,
        app_client_id: str | None,
        managed_identity: Any = None,
        managed_identity_client_id: str | None = None,
        home_credential: Callable[[], Any] | None = None,
        settings: Mapping[str, str] | None = None,
        authority: str = "https://login.microsoftonline.com",
        assertion_credential: Callable[..., Any] | None = None,
        certificate_credential: Callable[..., Any] | None = None,
    ) -> None:
        self.app_client_id = app_client_id
        self._managed_identity = managed_identity
        self.managed_identity_client_id = managed_identity_client_id
        self._home = home_credential
        self.settings = settings
        self.authority = authority
        self._assertion_credential = assertion_credential
        self._certificate_credential = certificate_credential
        self._cache: dict[tuple[str, str], Any] = {}

    def managed_identity(self) -> Any:
        if self._managed_identity is None:
            from azure.identity import ManagedIdentityCredential

            mi_id = self.managed_identity_client_id
            self._managed_identity = ManagedIdentityCredential(client_id=mi_id) if mi_id else \
                ManagedIdentityCredential()
        return self._managed_identity

    def for_tenant(self, tenant_id: str, kind: str, *, certificate_setting: str | None = None,
                   certificate_client_id: str | None = None) -> Any:
        key = (tenant_id, kind)
        if key not in self._cache:
            self._cache[key] = self._build(tenant_id, kind, certificate_setting, certificate_client_id)
        return self._cache[key]

    def _build(self, tenant_id: str, kind: str, certificate_setting: str | None,
               certificate_client_id: str | None) -> Any:
        if kind == "home":
            if self._home is not None:
                return self._home()
            from azure.identity import DefaultAzureCredential

            return DefaultAzureCredential()
        if kind == "federated":
            if not self.app_client_id:
                raise TenantCredentialError(
                    f"tenant {tenant_id} signs in through the multi-tenant app, but setting TENANT_APP_CLIENT_ID "
                    "is not set: register the app with the managed identity as its federated credential "
                    "(docs/operations.md, 'Onboarding a customer tenant') and set its client id")
            audience = TOKEN_EXCHANGE_AUDIENCES.get(self.authority.rstrip("/"))
            if audience is None:
                raise TenantCredentialError(f"no token-exchange audience is known for authority {self.authority}")
            build = self._assertion_credential
            if build is None:
                from azure.identity import ClientAssertionCredential as build  # type: ignore[no-redef]
            return build(tenant_id, self.app_client_id, ManagedIdentityAssertion(self.managed_identity(), audience),
                         authority=self.authority)
        if kind == "certificate":
            pem = (self.settings or {}).get(certificate_setting or "") if certificate_setting else None
            if not pem:
                raise TenantCredentialError(
                    f"tenant {tenant_id} signs in with a certificate held in app setting {certificate_setting!r}, "
                    "which is empty: set it to a Key Vault reference of the certificate (PEM, with its key)")
            build = self._certificate_credential
            if build is None:
                from azure.identity import CertificateCredential as build  # type: ignore[no-redef]
            return build(tenant_id, certificate_client_id, certificate_data=pem.encode("utf-8"),
                         authority=self.authority)
        raise TenantCredentialError(f"tenant {tenant_id}: unknown credential kind {kind[:40]!r}")


class TenantBoundCredential:
    """A credential that asks for every token in one tenant (``tenant_id=``): the operator's own
    sign-in (``az login``) for CLI verbs run with ``--tenant`` against a customer tenant where the
    operator is an admin (a GDAP relationship or a guest account)."""

    def __init__(self, credential: Any, tenant_id: str) -> None:
        self.credential = credential
        self.tenant_id = tenant_id

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        kwargs["tenant_id"] = self.tenant_id
        return self.credential.get_token(*scopes, **kwargs)

    def close(self) -> None:
        close = getattr(self.credential, "close", None)
        if callable(close):
            close()
