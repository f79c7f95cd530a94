from __future__ import annotations

from twinstack.images.cli import main

main()
