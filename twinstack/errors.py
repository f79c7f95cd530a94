"""The error hierarchy every twinstack entry point understands.

A :class:`TwinstackError` carries a message a person can act on (which file, which key,
which value, what is allowed). Entry points turn it into a CLI exit code 2 or a
``pulumi.RunError``; nothing else should reach a user as a traceback.
"""

from __future__ import annotations


class TwinstackError(Exception):
    """Base class for every error twinstack reports to a user."""


class SpecError(TwinstackError, ValueError):
    """A stack file or spec value is invalid."""
