"""The Pulumi wire format's special values, defined once.

Resource properties on the engine's wire (and in ``pulumi stack export``) mark secrets
with an envelope ``{SIG_KEY: SECRET_SIG, "value" | "ciphertext": ...}`` and unknown
values (preview) with a sentinel string. The plan recorder, the policy harness, the
footprint reader and the real-daemon harness all read these; they import them from here.
"""

from __future__ import annotations

SIG_KEY = "4dabf18193072939515e22adb298388d"
"""Key that marks a special object (secret, asset, archive, resource reference)."""
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
"""``SIG_KEY``'s value for a secret envelope."""
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""The engine's unknown-value sentinel (``UnknownStringValue``)."""
