"""The grading policy: weights, thresholds and allow-lists, as data with defaults.

Why data: a SOC tunes how strongly each signal counts without touching code, and reviewers
can read the whole policy in one JSON file. Defaults are chosen so the grader gets the
playbook's scenarios right with empty allow-lists (it must not need to be told names).
Override with a JSON file (setting ``GRADER_POLICY_FILE`` or ``--policy``) holding any subset of
the fields; unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grading.errors import ConfigurationError


class PolicyError(ConfigurationError, ValueError):
    """The policy file is unreadable or holds a bad value; the message names the key."""


DEFAULT_WEIGHTS: dict[str, int] = {
    # configuration change checks
    "connector_created": 10,
    "connector_changed": 10,
    "change_from_new_country": 30,
    "change_from_new_isp": 10,
    "change_by_admin_without_history": 15,
    "change_after_compromise": 35,
    # what a change did (configuration semantics): "act" findings, dangerous by themselves
    "smarthost_new_domain": 35,
    "tls_dropped": 20,
    "sender_ips_widened_broad": 30,
    "restrict_domains_off": 20,
    "connector_type_changed": 15,
    "impersonating_name": 35,
    # a transport rule that routes, unfilters, rewrites headers or redirects, linked to the connector: created
    # or changed in the lookback by the admin who changed the connector (an act), or by someone else (context)
    "transport_rule_same_actor": 40,
    "transport_rule_linked": 10,
    # drift from an approved configuration: at least this, else the weights of the risks that drifted
    "approved_drift": 10,
    # what a change did: context
    "sender_ips_widened": 5,
    "connector_enabled": 5,
    "admin_compromised_at_another_time": 5,
    "change_from_hosting_provider": 15,
    "change_without_sign_in": 15,
    # admin checks
    "admin_burst_then_success": 35,
    "admin_logon_new_location": 15,
    # traffic checks
    "volume_above_baseline": 15,
    "sender_mismatch": 25,
    "no_sender_object_id": 15,
    "spray_new_domains": 25,
    "supply_chain_targeting": 30,
    "internal_targeting": 30,
    "new_source_ips": 10,
    "new_sender_domains": 10,
    "threat_verdicts": 20,
    "malicious_attachments": 20,
    "linked_alert": 5,
}

DEFAULT_BENIGN_WEIGHTS: dict[str, int] = {
    # benign explanations found in the data: each LOWERS the score by its weight
    "travel_with_strong_authentication": 30,
    "senders_known_before": 10,
    "approved_configuration": 20,
}


@dataclass(frozen=True)
class Policy:
    """Weights add up to a 0-100 score; thresholds turn the score into a classification."""

    weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    true_positive_score: int = 50
    """At or above: truePositive."""
    false_positive_score: int = 25
    """Below: falsePositive (or informationalExpectedActivity for an expected change); between the two
    thresholds the verdict is unknown (inconclusive: an analyst decides)."""
    min_baseline_hours: int = 72
    """A connector with less history than this before its cutoff has no baseline and is judged as new."""
    volume_mad_factor: float = 6.0
    volume_tolerance: float = 1.5
    """An hour is above the band when it exceeds max(p99, median + factor x MAD) x tolerance."""
    volume_min_hours_above: int = 2
    mismatch_min_messages: int = 5
    mismatch_ratio_rise: float = 0.2
    """Window ratio of P1/P2 mismatches (or empty SenderObjectId) must exceed the baseline ratio by this."""
    spray_min_domains: int = 5
    spray_new_ratio: float = 0.5
    new_ip_min_messages: int = 5
    compromise_to_change_hours: float = 72.0
    """A change within this many hours after a compromise signal on the same admin is tied to it."""
    protected_partner_domains: tuple[str, ...] = ()
    """Allow-list: external domains whose mail is expected (never counted as spray targets)."""
    expected_admins: tuple[str, ...] = ()
    """Allow-list: admin UPNs or object ids whose changes from usual places are expected."""
    benign_weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BENIGN_WEIGHTS))
    """Benign explanations found in the data, each lowering the score by its weight."""
    context_only_max_score: int = 45
    """Without a finding of a malicious act (abusive traffic or a dangerous configuration change) the score is
    capped here, below ``true_positive_score``: context alone never makes a truePositive."""
    broad_sender_prefix: int = 24
    """SenderIPAddresses widened by an IPv4 range shorter than this prefix is a dangerous change."""
    broad_sender_addresses: int = 256
    """... or by more addresses than this in total."""
    travel_min_days: int = 2
    """An admin's new country counts as travel (not compromise) when the admin signed in there with MFA
    satisfied, from a managed or compliant device, with no risk, on at least this many distinct days that
    began at least ``travel_min_lead_hours`` before the change."""
    travel_min_lead_hours: float = 24.0
    hosting_isp_words: tuple[str, ...] = (
        "hosting", "datacenter", "data center", "cloud", "server", "vps", "colo", "digitalocean", "ovh", "hetzner",
        "linode", "vultr", "choopa", "m247", "leaseweb", "contabo", "amazon", "google llc", "microsoft azure",
    )
    """Words of an ISP name that mark a hosting provider (a datacentre is not a residential or mobile ISP)."""
    supply_chain_ratio_margin: float = 0.05
    """... and their share of the mail to known correspondents must exceed the connector's historical
    mismatch share by this much (a partner whose invoices always mismatched is judged against itself)."""
    supply_chain_min_messages: int = 3
    """Mismatched or threat-laden messages to known correspondents needed for a supply-chain finding."""

    def weight(self, name: str) -> int:
        if name in self.benign_weights:
            return self.benign_weights[name]
        return self.weights.get(name, 0)


def _coerce(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise PolicyError(f"policy key {name!r}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError(f"policy key {name!r}: expected a whole number >= 0, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PolicyError(f"policy key {name!r}: expected a number >= 0, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"policy key {name!r}: expected a list of strings, got {value!r}")
        return tuple(v.strip().lower() for v in value)
    raise PolicyError(f"policy key {name!r} cannot be set")


def policy_from_mapping(data: dict[str, Any]) -> Policy:
    """Build a policy from defaults overridden by *data*; every key and value is checked."""
    if not isinstance(data, dict):
        raise PolicyError("the policy must be a JSON object")
    defaults = Policy()
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key == "weights":
            if not isinstance(value, dict):
                raise PolicyError("policy key 'weights': expected an object of check -> weight")
            weights = dict(defaults.weights)
            for wname, wvalue in value.items():
                if wname not in DEFAULT_WEIGHTS:
                    raise PolicyError(
                        f"policy key 'weights.{wname}' is unknown; known: {', '.join(sorted(DEFAULT_WEIGHTS))}"
                    )
                weights[wname] = _coerce(f"weights.{wname}", wvalue, 0)
            changes["weights"] = weights
            continue
        if key == "benign_weights":
            if not isinstance(value, dict):
                raise PolicyError("policy key 'benign_weights': expected an object of explanation -> weight")
            benign = dict(defaults.benign_weights)
            for wname, wvalue in value.items():
                if wname not in DEFAULT_BENIGN_WEIGHTS:
                    raise PolicyError(
                        f"policy key 'benign_weights.{wname}' is unknown; known: "
                        f"{', '.join(sorted(DEFAULT_BENIGN_WEIGHTS))}"
                    )
                benign[wname] = _coerce(f"benign_weights.{wname}", wvalue, 0)
            changes["benign_weights"] = benign
            continue
        if key not in {f.name for f in dataclasses.fields(Policy)}:
            raise PolicyError(f"policy key {key!r} is unknown")
        changes[key] = _coerce(key, value, getattr(defaults, key))
    policy = dataclasses.replace(defaults, **changes)
    if policy.false_positive_score > policy.true_positive_score:
        raise PolicyError("policy: false_positive_score must not exceed true_positive_score")
    if policy.context_only_max_score >= policy.true_positive_score:
        raise PolicyError("policy: context_only_max_score must be below true_positive_score (context alone "
                          "never makes a truePositive)")
    return policy


def load_policy(path: Path | None) -> Policy:
    """The default policy, or the defaults overridden by the JSON file at *path*."""
    if path is None:
        return Policy()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy file {path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise PolicyError(f"policy file {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        return policy_from_mapping(data)
    except PolicyError as exc:
        raise PolicyError(f"policy file {path}: {exc}") from None
