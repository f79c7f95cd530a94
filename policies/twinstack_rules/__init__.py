"""twinstack's policy rules: plain validation functions plus the policy objects built on
them. Packs (``policies/<pack>/__main__.py``) only assemble a ``PolicyPack`` from these
lists; constructing a ``PolicyPack`` starts the gRPC server, so it never happens here."""


def analyzed_types() -> dict[str, frozenset[str]]:
    """Resource policy name → the resource types it can answer (``common.for_types``),
    for every type-filtered resource policy of twinstack's packs.

    ``twinstack policy`` sends ``Analyze`` for a resource only to the packs with a policy
    that can answer its type (the engine sends every resource to every pack; the answers
    are the same, an empty one from the others)."""
    from twinstack_rules import common, container, vm  # noqa: F401  (they fill the registry)

    return dict(common.ANALYZED_TYPES)
