"""Loopback HTTPS fakes of the remediation services (Exchange Online admin API, Graph, webhooks)."""
