"""The remediation queue: where a true-positive incident is handed to the remediation runner.

Why the body is base64 text: the Functions host's queue trigger decodes base64 by default
(host.json ``messageEncoding: base64``); the message module encodes it, so the client sends the
text as is (no encode policy) and what lands on the queue is exactly what the host expects.
"""

from __future__ import annotations

import contextlib

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from grading.incident import RemediationMessage


class RemediationQueue:
    def __init__(self, client: QueueClient, *, create: bool = True) -> None:
        self.client = client
        if create:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()

    @property
    def name(self) -> str:
        return str(self.client.queue_name)

    def send(self, message: RemediationMessage) -> str:
        """Put *message* on the queue; returns the queue's message id."""
        sent = self.client.send_message(message.to_base64())
        return str(sent.id)
