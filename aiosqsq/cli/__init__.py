"""The ``aiosqsq`` command: ``aiosqsq run MODULE:ATTRIBUTE`` (also ``python -m aiosqsq``).

``command`` declares the options and dispatches; ``worker`` runs one App in this process;
``exit_codes`` lists what the exit status means. ``aiosqsq.importer``,
``aiosqsq.logconfig`` and ``aiosqsq.supervisor`` do the rest.
"""

from aiosqsq.cli.command import main
from aiosqsq.cli.exit_codes import ExitCode

__all__ = ["ExitCode", "main"]
