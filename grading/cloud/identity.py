"""The identity in use: who a token was for, so an authorisation error can name it.

Why: a 403 that says "the managed identity 'func-grader' (app id ...) lacks X" is actionable; a
bare 403 is not. Tokens are read unverified, only to name the identity, never to decide anything.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo

from grading.cloud.responses import clip


def _jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT access token, *unverified*: read only to name the identity in error
    messages, never to make a decision."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (IndexError, ValueError, binascii.Error, UnicodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


_TOKEN_OPTIONS = ("claims", "tenant_id", "enable_cae")


class IdentityRecorder:
    """Wraps a TokenCredential and remembers who the last token was for (and a token failure),
    so an authorisation error can name the identity that needs the permission."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential
        self.claims: dict[str, Any] = {}
        self.token_error: Exception | None = None

    def _remember(self, token: str) -> None:
        self.token_error = None
        self.claims = _jwt_claims(token)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            token = self._credential.get_token(*scopes, **kwargs)
        except Exception as exc:
            self.token_error = exc
            raise
        self._remember(token.token)
        return token

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        try:
            if hasattr(self._credential, "get_token_info"):
                info = self._credential.get_token_info(*scopes, options=options)
            else:
                # Pass only the options in use: older get_token signatures lack some of them.
                opts = {k: v for k, v in dict(options or {}).items() if k in _TOKEN_OPTIONS and v}
                token = self._credential.get_token(*scopes, **opts)
                info = AccessTokenInfo(token.token, token.expires_on)
        except Exception as exc:
            self.token_error = exc
            raise
        self._remember(info.token)
        return info

    def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()

    def describe(self) -> str:
        """E.g. ``managed identity 'func-grader' (app id ..., object id ...)``, or a hint."""
        c = self.claims
        if not c:
            return "the app's identity (DefaultAzureCredential: the Function App's managed identity in Azure)"
        labels = (("app id", "appid"), ("object id", "oid"), ("tenant", "tid"))
        ids = ", ".join(f"{label} {c[key]}" for label, key in labels if isinstance(c.get(key), str))
        mirid = c.get("xms_mirid")
        if isinstance(mirid, str) and "/" in mirid:
            who = f"managed identity '{mirid.rstrip('/').rsplit('/', 1)[-1]}'"
        elif isinstance(c.get("upn") or c.get("unique_name"), str):
            who = f"user {c.get('upn') or c.get('unique_name')}"
        else:
            who = "service principal"
        return f"{who} ({ids})" if ids else who

    def roles(self) -> tuple[str, ...]:
        roles = self.claims.get("roles")
        return tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else ()


def token_failure(endpoint: str, error: Exception) -> str:
    """Why no token could be had for *endpoint*, and what to set up."""
    return (
        f"could not get a token for {endpoint}/.default ({clip(str(error), 300)}). In Azure, turn on the "
        "Function App's managed identity; elsewhere sign in (az login) or set AZURE_TENANT_ID, "
        "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for DefaultAzureCredential"
    )
