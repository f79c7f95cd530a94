"""twinstack's policy rules: plain validation functions plus the policy objects built on
them. Packs (``policies/<pack>/__main__.py``) only assemble a ``PolicyPack`` from these
lists; constructing a ``PolicyPack`` starts the gRPC server, so it never happens here."""
