"""The grader's tables, by role, named ``<prefix><Role>`` (GRADER_TABLE_PREFIX, default ``grader``).

=============  =================  ==================  ==========================================
table          PartitionKey       RowKey              holds
=============  =================  ==================  ==========================================
Connectors     ``connector``      connector (key)     latest verdict, baseline, suppression
Verdicts       sweep id           connector (key)     every verdict of every sweep (history)
Sweeps         ``sweep``          sweep id            sweep records (the commit marker)
Incidents      ``incident``       incident key        one row per TP incident put on the queue
Scheduler      ``scheduler``      ``watermark``       the timer's watermark and lease
Aggregates     ``<kind>-YYYYMMDD`` ``HH`` / ``HH-NNN`` hourly query rows (grading/storage/aggregates.py)
=============  =================  ==================  ==========================================

Why these partitions: a sweep's verdicts share the sweep's partition, so they are written in
entity-group transactions; the connector states share one partition (a tenant has tens of
connectors, not thousands), so a sweep updates them in one or a few transactions too.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient

from grading.storage.connection import StorageConnection

ROLES = ("Connectors", "Verdicts", "Sweeps", "Incidents", "Scheduler", "Aggregates")


@dataclass(frozen=True)
class GraderTables:
    connectors: TableClient
    verdicts: TableClient
    sweeps: TableClient
    incidents: TableClient
    scheduler: TableClient
    aggregates: TableClient

    @classmethod
    def open(cls, connection: StorageConnection, prefix: str = "grader", *, create: bool = True) -> GraderTables:
        """Clients of the grader's tables; *create* makes any that are missing (idempotent)."""
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,39}", prefix):
            raise ValueError(f"table prefix {prefix!r}: expected letters and digits starting with a letter")
        service = connection.table_service()
        clients = {role.lower(): _table(service, prefix + role, create) for role in ROLES}
        return cls(**clients)

    def all(self) -> tuple[TableClient, ...]:
        return (self.connectors, self.verdicts, self.sweeps, self.incidents, self.scheduler, self.aggregates)


def _table(service: TableServiceClient, name: str, create: bool) -> TableClient:
    if create:
        with contextlib.suppress(ResourceExistsError):
            service.create_table(name)
    return service.get_table_client(name)
