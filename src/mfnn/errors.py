"""Errors that reach the user as one paragraph, without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MfnnError(Exception):
    """Base class for errors mfnn reports to the user as a plain message."""


class ConfigError(MfnnError, ValueError):
    """Bad input, detected before any compute.

    The message names the field in backticks, states the rule, shows the value received
    and suggests a fix, e.g. "`model.width` must be a positive integer; got -3."
    """


class IntegrationError(MfnnError):
    """A run that cannot go on as configured, found while it runs (an adaptive step that
    does not reach its tolerance within `dynamics.max_steps`); the message says which
    setting to change."""


def closest(name: str, options: Iterable[str]) -> str | None:
    """The option closest to ``name`` (for "did you mean" hints), or None."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return match[0] if match else None


def did_you_mean(name: str, options: Iterable[str]) -> str:
    options = list(options)
    guess = closest(name, options)
    hint = f" Did you mean `{guess}`?" if guess else ""
    return f"Valid options: {', '.join(sorted(options))}.{hint}"
