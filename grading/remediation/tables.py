"""The remediation's tables, named ``<prefix><Role>`` like the grader's (GRADER_TABLE_PREFIX).

====================  =========================  ====================  ===============================
table                 PartitionKey               RowKey                holds
====================  =========================  ====================  ===============================
RemediationAudit      incident key (encoded),    action id ~ outcome   every action performed, held,
                      ``~invalid`` for bad       [~ try]               refused or failed; every bad
                      messages                                         message, once per try
RemediationActions    mode (report | enforce)    action id             the idempotency ledger: each
                                                                       action's key before and after
RemediationPending    ``pending`` /              action id / slot      actions held past the hourly
                      ``cap-YYYYMMDDHH``                               cap; the cap's slots
ConnectorInventory    Inbound | Outbound         connector (encoded)   Get-…Connector snapshots
====================  =========================  ====================  ===============================
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient

from grading.storage.connection import StorageConnection

ROLES = ("RemediationAudit", "RemediationActions", "RemediationPending", "ConnectorInventory")


@dataclass(frozen=True)
class RemediationTables:
    audit: TableClient
    actions: TableClient
    pending: TableClient
    inventory: TableClient

    @classmethod
    def open(cls, connection: StorageConnection, prefix: str = "grader", *, create: bool = True) -> RemediationTables:
        return cls.from_service(connection.table_service(), prefix, create=create)

    @classmethod
    def from_service(cls, service: TableServiceClient, prefix: str = "grader", *,
                     create: bool = True) -> RemediationTables:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,39}", prefix):
            raise ValueError(f"table prefix {prefix!r}: expected letters and digits starting with a letter")
        clients = []
        for role in ROLES:
            if create:
                with contextlib.suppress(ResourceExistsError):
                    service.create_table(prefix + role)
            clients.append(service.get_table_client(prefix + role))
        return cls(*clients)
