"""Time limits of the analyzer protocol, in a module light enough for the CLI to import."""

from __future__ import annotations

DEFAULT_CALL_TIMEOUT = 60.0
"""Seconds a policy pack may take to answer one analyzer call."""
