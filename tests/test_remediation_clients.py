"""The Exchange Online, Graph and webhook clients against loopback HTTPS fakes: retries, paging,
read-back and errors that say what to fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.tenant import ANCHOR, TOKEN, FakeTenant, StaticCredential
from remediation_support import (
    ADMIN_ID,
    ADMIN_UPN,
    Sleeps,
    exchange_client,
    fake_tenant,
    graph_client,
    transport_for,
)

from grading.cloud.http import ErrorKind, ServiceCallError
from grading.remediation.notify import WebhookNotifier, inline


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeTenant]:
    yield from fake_tenant(tmp_path)


def test_exchange_set_is_read_back_by_get_with_token_and_anchor(fake: FakeTenant) -> None:
    fake.exchange.add("Inbound", "Partner relay", addresses=["203.0.113.7"])
    credential = StaticCredential()
    client = exchange_client(fake, credential=credential)

    client.set_connector("Inbound", "Partner relay", Enabled=False)
    connector = client.get_connector("Inbound", "Partner relay")

    assert connector is not None and connector.enabled is False
    assert connector.sender_ip_addresses == ("203.0.113.7",)
    post = fake.server.received[0]
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["X-AnchorMailbox"] == ANCHOR
    assert post.body == {
        "CmdletInput": {
            "CmdletName": "Set-InboundConnector",
            "Parameters": {"Identity": "Partner relay", "Enabled": False},
        }
    }
    assert credential.scopes[0] == (f"{fake.server.origin}/.default",)


def test_exchange_list_follows_next_links(fake: FakeTenant) -> None:
    for i in range(5):
        fake.exchange.add("Outbound", f"relay {i}", addresses=[f"smtp{i}.example.net"])
    fake.exchange.page_size = 2

    names = [c.name for c in exchange_client(fake).list_connectors("Outbound")]

    assert names == [f"relay {i}" for i in range(5)]
    assert len(fake.server.received) == 3


def test_exchange_refuses_a_next_link_to_another_host(fake: FakeTenant) -> None:
    fake.server.fail("POST", "/InvokeCommand", 200, {"value": [], "@odata.nextLink": "https://evil.example/steal"})

    with pytest.raises(ServiceCallError, match="refusing to follow"):
        exchange_client(fake).list_connectors("Inbound")
    assert len(fake.server.received) == 1


def test_429_with_retry_after_is_retried_after_the_wait_asked(fake: FakeTenant) -> None:
    fake.exchange.add("Inbound", "Partner relay")
    fake.server.fail(
        "POST",
        "/InvokeCommand",
        429,
        {"error": {"code": "TooManyRequests", "message": "throttled"}},
        headers={"Retry-After": "7"},
    )
    sleeps = Sleeps()

    connector = exchange_client(fake, sleeps).get_connector("Inbound", "Partner relay")

    assert connector is not None
    assert sleeps.waits == [7.0]
    assert len(fake.server.received) == 2


def test_persistent_throttling_says_throttled_and_is_transient(fake: FakeTenant) -> None:
    fake.server.fail(
        "POST",
        "/v1.0/users/",
        429,
        {"error": {"code": "TooManyRequests", "message": "slow down"}},
        headers={"Retry-After": "1"},
        times=10,
    )
    sleeps = Sleeps()

    with pytest.raises(ServiceCallError) as caught:
        graph_client(fake, sleeps).revoke_sign_in_sessions(ADMIN_ID)

    assert caught.value.kind is ErrorKind.THROTTLED and caught.value.transient
    assert "throttling" in str(caught.value) and "4 attempts" in str(caught.value)
    assert sleeps.waits == [1.0, 1.0, 1.0]


def test_5xx_is_retried_with_backoff(fake: FakeTenant) -> None:
    fake.graph.add_user(ADMIN_ID, ADMIN_UPN)
    fake.server.fail("POST", "/revokeSignInSessions", 503, {"error": {"code": "ServiceUnavailable", "message": "x"}})
    sleeps = Sleeps()

    graph_client(fake, sleeps).revoke_sign_in_sessions(ADMIN_ID)

    assert len(sleeps.waits) == 1 and 1.0 <= sleeps.waits[0] <= 2.0
    assert fake.graph.revocations() == [f"/v1.0/users/{ADMIN_ID}/revokeSignInSessions"]


def test_unknown_connector_is_not_found_and_not_retried(fake: FakeTenant) -> None:
    client = exchange_client(fake)

    assert client.get_connector("Inbound", "Nope") is None
    with pytest.raises(ServiceCallError) as caught:
        client.set_connector("Inbound", "Nope", Enabled=False)

    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert "no such connector" in str(caught.value) and "ManagementObjectNotFoundException" in str(caught.value)
    assert len(fake.server.received) == 2  # one try each: a cmdlet's own error is not retried


def test_missing_exchange_role_names_what_to_grant(fake: FakeTenant) -> None:
    fake.exchange.add("Inbound", "Partner relay")
    fake.exchange.denied.add("Set-InboundConnector")

    with pytest.raises(ServiceCallError) as caught:
        exchange_client(fake).set_connector("Inbound", "Partner relay", Enabled=False)

    assert caught.value.kind is ErrorKind.PERMISSION
    assert "Exchange.ManageAsApp" in str(caught.value) and "Exchange Administrator" in str(caught.value)


def test_missing_graph_permission_names_it(fake: FakeTenant) -> None:
    fake.server.fail(
        "POST",
        "/revokeSignInSessions",
        403,
        {
            "error": {
                "code": "Authorization_RequestDenied",
                "message": "Insufficient privileges to complete the operation.",
            }
        },
    )

    with pytest.raises(ServiceCallError) as caught:
        graph_client(fake).revoke_sign_in_sessions(ADMIN_ID)

    assert caught.value.kind is ErrorKind.PERMISSION
    assert "User.RevokeSessions.All" in str(caught.value)
    assert "Insufficient privileges" in str(caught.value)


def test_graph_user_ids_stay_one_path_segment(fake: FakeTenant) -> None:
    with pytest.raises(ServiceCallError) as caught:
        graph_client(fake).revoke_sign_in_sessions("../../security/alerts_v2/x")

    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert fake.server.received[0].path == "/v1.0/users/..%2F..%2Fsecurity%2Falerts_v2%2Fx/revokeSignInSessions"


def test_webhook_failure_never_reveals_the_url(fake: FakeTenant) -> None:
    fake.server.fail("POST", "/webhookb2/", 404, {"error": {"code": "NotFound", "message": "gone"}})
    notifier = WebhookNotifier(fake.webhook_url, transport=transport_for(fake.server), sleep=Sleeps())

    with pytest.raises(ServiceCallError) as caught:
        notifier.send("hello")

    assert "secret-part-of-the-url" not in str(caught.value)
    assert "REMEDIATION_WEBHOOK_URL" in str(caught.value)


def test_webhook_text_keeps_attacker_strings_inert() -> None:
    text = inline("<!channel> [click](https://evil.example) `x`\nforged line")

    assert "<" not in text and ">" not in text and "\n" not in text
    assert text.startswith("`") and text.endswith("`") and text.count("`") == 2
