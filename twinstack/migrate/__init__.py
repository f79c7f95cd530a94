"""Move a service's data between its container and VM twins (``twinstack migrate``).

See :mod:`twinstack.migrate.run` for the flow and README.md ("Flip the runtime, keep the
data") for what a user runs.
"""
