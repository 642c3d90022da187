"""Telemetry sources: one protocol (:class:`TelemetrySource`), three implementations."""

from grading.sources.base import Column, QueryResult, TelemetrySource, TelemetrySourceError

__all__ = ["Column", "QueryResult", "TelemetrySource", "TelemetrySourceError"]
