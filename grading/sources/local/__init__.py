"""The local source: the very same ``.kql`` files run with duckdb-kql over an export folder.

:mod:`grading.sources.local.export` loads and normalises the folder (one file per table),
:mod:`grading.sources.local.caps` restores the ``make_set`` caps duckdb-kql ignores, and
:class:`LocalSource` runs rendered queries on the result.
"""

from grading.sources.local.source import LocalSource

__all__ = ["LocalSource"]
