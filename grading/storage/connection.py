"""Clients for the grader's Table, Queue and Blob Storage, from the same settings the Functions host reads.

Why the host's settings: the app and the host then use one storage account and one identity, and
the deployment configures storage once. Locally ``AzureWebJobsStorage`` is a connection string
(Azurite); in Azure it is replaced by the identity-based ``AzureWebJobsStorage__*`` settings and
the app's managed identity (``__credential=managedidentity``, ``__clientId`` for a user-assigned
one), or DefaultAzureCredential when only the service URIs are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from grading.settings import SettingsError, StorageSettings

STORAGE_HINT = (
    "set AzureWebJobsStorage to a connection string (locally: UseDevelopmentStorage=true with Azurite "
    "running) or, in Azure, AzureWebJobsStorage__tableServiceUri and __queueServiceUri (or __accountName) "
    "for the app's managed identity"
)
BLOB_HINT = (
    "set AzureWebJobsStorage__blobServiceUri (or __accountName) beside the table and queue service URIs: "
    "sweep reports are written to Blob Storage"
)


def _credential(settings: StorageSettings) -> Any:
    """The managed identity the settings name, else DefaultAzureCredential (a developer's sign-in,
    or the app's identity through its environment)."""
    if settings.credential == "managedidentity":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=settings.client_id) if settings.client_id \
            else ManagedIdentityCredential()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@dataclass(frozen=True)
class StorageConnection:
    """How to reach the account: a connection string, or service URIs plus a token credential.

    The Blob URI is optional (the tables and the queue are what a sweep cannot do without): an
    identity-based connection without one cannot write sweep reports, and says so when asked to."""

    connection_string: str | None = None
    table_uri: str | None = None
    queue_uri: str | None = None
    credential: Any = None
    blob_uri: str | None = None

    def __repr__(self) -> str:  # never print the account key
        where = self.table_uri or ("connection string" if self.connection_string else "nowhere")
        return f"StorageConnection({where})"

    @classmethod
    def from_settings(cls, settings: StorageSettings, *, credential: Any = None) -> StorageConnection:
        """The connection the settings describe; :class:`SettingsError` if they describe none.

        Identity-based settings win over a connection string, as in the Functions host."""
        table_uri, queue_uri = settings.table_service_uri, settings.queue_service_uri
        blob_uri = settings.blob_service_uri
        if settings.account_name:
            table_uri = table_uri or f"https://{settings.account_name}.table.core.windows.net"
            queue_uri = queue_uri or f"https://{settings.account_name}.queue.core.windows.net"
            blob_uri = blob_uri or f"https://{settings.account_name}.blob.core.windows.net"
        if table_uri or queue_uri:
            if not (table_uri and queue_uri):
                raise SettingsError(
                    "setting AzureWebJobsStorage__tableServiceUri and AzureWebJobsStorage__queueServiceUri "
                    "must both be set (or AzureWebJobsStorage__accountName): the grader uses tables and a queue"
                )
            return cls(table_uri=table_uri, queue_uri=queue_uri, blob_uri=blob_uri,
                       credential=credential if credential is not None else _credential(settings))
        if settings.connection_string:
            return cls(connection_string=settings.connection_string)
        raise SettingsError("storage is not configured: " + STORAGE_HINT)

    def table_service(self) -> TableServiceClient:
        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string)
        assert self.table_uri is not None
        return TableServiceClient(self.table_uri, credential=self.credential)

    def queue(self, name: str) -> QueueClient:
        """A client of queue *name*. Messages are sent as given: the grader base64-encodes them
        itself (:meth:`RemediationMessage.to_base64`), as the host's queue trigger expects."""
        if self.connection_string:
            return QueueClient.from_connection_string(self.connection_string, name)
        assert self.queue_uri is not None
        return QueueClient(self.queue_uri, name, credential=self.credential)

    def blob_service(self, **options: Any) -> BlobServiceClient:
        """A Blob service client; *options* go to the client (``retry_policy``, ``transport``...).
        :class:`SettingsError` if the settings name no Blob service."""
        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string, **options)
        if not self.blob_uri:
            raise SettingsError("no Blob service configured: " + BLOB_HINT)
        return BlobServiceClient(self.blob_uri, credential=self.credential, **options)
