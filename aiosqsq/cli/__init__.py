"""The ``aiosqsq`` command: ``aiosqsq run MODULE:ATTRIBUTE`` (also ``python -m aiosqsq``),
the operator commands ``queues``, ``send`` and ``dlq``, and ``local`` (an SQS emulator).

``command`` declares the options and dispatches; ``worker`` runs one App in this process;
``local`` serves ``run --local`` and ``local_command`` the ``aiosqsq local`` command (both on
``local_server``); ``unknown_settings`` names the ``QUEUE_*`` variables nothing reads.
``aiosqsq.exit_codes`` (what the exit status means, shared with the supervisor),
``aiosqsq.importer``, ``aiosqsq.logconfig`` and ``aiosqsq.supervisor`` do the rest.

The operator commands: ``queues`` (create, stats, purge), ``send_command``, ``dlq``
(inspect, redrive), on what ``ops`` shares (settings, exit statuses, output) and
``queue_stats``, ``peek``, ``jsonl_file``, ``batch_sender`` and ``redrive`` do their work.
"""

from aiosqsq.cli.command import main
from aiosqsq.exit_codes import ExitCode

__all__ = ["ExitCode", "main"]
