"""Grades Exchange Online connectors true/false positive from Defender / Sentinel telemetry."""

__version__ = "0.1.0"
