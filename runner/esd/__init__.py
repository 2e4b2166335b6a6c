"""esd: run software-distribution and OS-provisioning change orders on ansible-runner.

The package layers, bottom up: ``errors`` (exceptions, exit codes), ``catalogue`` (request types to
stages and gates), ``changeorder`` (the YAML document and its validation), ``plan`` (a change order
resolved against the inventory), ``ledger`` (state, audit log, lock), ``stage`` (one playbook run
through ansible-runner), ``gates`` (decisions, separation of duties), ``engine`` (runs a plan),
``report`` (status report), ``cli`` (the ``esd`` command) and ``demo``.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
