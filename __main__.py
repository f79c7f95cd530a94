"""twinstack: one service spec, realized as libvirt VMs, Docker containers, or both.

The stack's `twinstack:runtime` config picks the realization (see README.md). Everything
lives in components/ (resources) and twinstack/program.py (reading config once).
"""

from twinstack.program import run

run()
