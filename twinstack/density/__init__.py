"""Cost and density of the same services as VMs and as containers (``twinstack diff``).

* :mod:`~twinstack.density.footprint` reads instances from a plan or a stack export,
* :mod:`~twinstack.density.overhead` holds the overhead figures and their sources,
* :mod:`~twinstack.density.model` computes demand, instances per host, placement and cost,
* :mod:`~twinstack.density.report` compares two sides and renders the report,
* :mod:`~twinstack.density.budget` is the budget rule the policy pack calls,
* :mod:`~twinstack.density.command` is the ``diff`` CLI command.
"""
