"""The verdict's vocabulary: classifications and determinations, one enum each.

Why enums of strings: they are the verdict contract's values (JSON, Table Storage, the queue
message, Defender's alert classification), so each member *is* its wire spelling
(``Classification.TRUE_POSITIVE == "truePositive"``) and a stored or received value compares
equal without conversion; spelling one out anywhere else is a typo waiting to happen.
"""

from __future__ import annotations

from enum import StrEnum


class Classification(StrEnum):
    """What the grader concluded about a connector (Defender's alert classifications, plus unknown)."""

    TRUE_POSITIVE = "truePositive"
    FALSE_POSITIVE = "falsePositive"
    INFORMATIONAL = "informationalExpectedActivity"
    """A recent change with nothing suspicious about it: benign activity worth telling."""
    UNKNOWN = "unknown"
    """Incomplete or conflicting evidence: an analyst decides (``reasonIfUnknown`` says why)."""


class Determination(StrEnum):
    """Why a true positive is one (Defender's alert determinations the grader uses)."""

    COMPROMISED_ACCOUNT = "compromisedAccount"
    PHISHING = "phishing"
    MALICIOUS_USER_ACTIVITY = "maliciousUserActivity"


LISTING_ORDER: dict[str, int] = {c.value: i for i, c in enumerate(Classification)}
"""Where a classification sorts in listings of verdicts: true positives first, unknown last."""
