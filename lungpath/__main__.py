"""``python -m lungpath`` is the ``lungpath`` command."""

from lungpath.cli import main

main()
