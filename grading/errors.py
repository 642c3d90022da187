"""One root for the grader's own errors, and the four families a caller tells apart.

Why families: a caller (the CLI, a Functions trigger, an operator reading a log) needs to know
whose move it is, not which module failed. Usage, configuration and input errors are the
caller's to fix (the CLI exits 2 and prints the message as it is, since each message names the
input and what to do); a service error is the environment's (exit 1, and a trigger lets the host
retry). Every exception class the grader defines derives from exactly one family.
"""

from __future__ import annotations


class GraderError(Exception):
    """The root of every error the grader raises on purpose; ``str(exc)`` says what to do."""


class UsageError(GraderError):
    """A command was used wrongly: a missing or contradictory option, an unknown name."""


class ConfigurationError(GraderError):
    """A setting, the policy file or a shipped query file is wrong or missing."""


class InputError(GraderError):
    """Data handed to the grader cannot be used: an export, a queue message, a query parameter."""


class ServiceError(GraderError):
    """A service the grader depends on (Storage, Graph, Exchange, Log Analytics) refused or failed."""


CALLER_ERRORS: tuple[type[GraderError], ...] = (UsageError, ConfigurationError, InputError)
"""The families that are the caller's to fix (the CLI's exit code 2)."""
