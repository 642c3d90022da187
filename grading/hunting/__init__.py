"""Hunting queries (``queries/*.kql``), table schemas, rendering per dialect, telemetry sources."""
