"""Remediation of true-positive incidents: the queue message, service clients, the runner."""
