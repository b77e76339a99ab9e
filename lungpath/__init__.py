"""lungpath: the composition root — settings, the ``lungpath`` command line, the node process.

The packages ``db``, ``model``, ``scp_node``, ``pipeline`` and ``training`` sit beside this
one at the top of the repository and install as top-level packages (docs/architecture.md
says why); only this package wires them together.
"""

import logging
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lungpath")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())
