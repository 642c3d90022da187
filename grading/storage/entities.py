"""Table entities within the service's limits: JSON split across properties, batches by partition.

Why: a Table string property holds at most 64 KiB (32 K UTF-16 units), an entity at most 1 MiB and
an entity-group transaction at most 100 operations, 4 MiB and one partition. A verdict's evidence
is JSON of unbounded size (attacker-chosen names and parameters), so it is stored as ASCII JSON
split into ``<Name>0..<Name>N`` properties, up to a budget well inside 1 MiB; past the budget the
caller trims it deliberately (see :func:`grading.storage.store.trim_verdict`) and records what it
trimmed, rather than letting the service refuse the whole sweep.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from azure.data.tables import TableClient

from grading.errors import InputError

CHUNK_CHARS = 32_000            # ASCII JSON: one char is one UTF-16 unit, so 64 000 bytes <= 64 KiB
JSON_BUDGET_CHARS = 400_000     # 800 KB of JSON per entity, leaving room for the other properties
MAX_BATCH_OPERATIONS = 100
MAX_BATCH_BYTES = 3_500_000     # the service's limit is 4 MiB per transaction payload

Operation = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, Any]]


class EntityTooLarge(InputError, ValueError):
    """A JSON value does not fit the budget; the caller trims it."""


def dumps(value: Any) -> str:
    """Compact ASCII JSON (non-ASCII escaped), so characters and UTF-16 units coincide."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True, default=str)


def put_json(entity: dict[str, Any], name: str, value: Any, *, budget: int = JSON_BUDGET_CHARS) -> int:
    """Store *value* as JSON in ``name0..nameN`` plus ``nameChunks``; returns its size in chars."""
    text = dumps(value)
    if len(text) > budget:
        raise EntityTooLarge(f"{name} is {len(text)} characters of JSON, over the budget of {budget}")
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]
    entity[f"{name}Chunks"] = len(chunks)
    for i, chunk in enumerate(chunks):
        entity[f"{name}{i}"] = chunk
    return len(text)


def get_json(entity: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """The value :func:`put_json` stored, or *default* where the entity has none."""
    count = entity.get(f"{name}Chunks")
    if not count:
        return default
    return json.loads("".join(entity.get(f"{name}{i}", "") for i in range(int(count))))


def without_none(entity: Mapping[str, Any]) -> dict[str, Any]:
    """Table Storage has no null: an absent property is how "no value" is stored."""
    return {k: v for k, v in entity.items() if v is not None}


def estimated_bytes(entity: Mapping[str, Any]) -> int:
    """An upper estimate of an entity's size as the service counts it (UTF-16 strings)."""
    size = 4
    for key, value in entity.items():
        size += 8 + 2 * len(key)
        if isinstance(value, str):
            size += 4 + 2 * len(value)
        elif isinstance(value, bytes):
            size += 4 + len(value)
        elif isinstance(value, (int, float, datetime)):
            size += 8
        else:
            size += 4 + 2 * len(str(value))
    return size


def batches(operations: Iterable[Operation]) -> Iterator[list[Operation]]:
    """Operations grouped into valid transactions: one partition each, at most 100 operations and
    :data:`MAX_BATCH_BYTES`, in the order given within each partition."""
    by_partition: dict[str, list[Operation]] = defaultdict(list)
    for op in operations:
        by_partition[str(op[1]["PartitionKey"])].append(op)
    for ops in by_partition.values():
        batch: list[Operation] = []
        size = 0
        for op in ops:
            op_size = estimated_bytes(op[1]) + 512
            if batch and (len(batch) >= MAX_BATCH_OPERATIONS or size + op_size > MAX_BATCH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(op)
            size += op_size
        if batch:
            yield batch


def submit(table: TableClient, operations: Iterable[Operation]) -> int:
    """Submit *operations* as entity-group transactions; returns how many were applied.

    Each transaction is atomic (all or nothing within its partition); a set larger than one
    transaction is applied in several, so the caller writes its commit marker last."""
    done = 0
    for batch in batches(operations):
        table.submit_transaction(batch)  # type: ignore[arg-type]
        done += len(batch)
    return done
