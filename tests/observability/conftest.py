"""The CLI tests' fixtures (a ledger, queues on moto, a worker's QUEUE_* for moto)."""

from tests.cli.conftest import ledger, moto_queues, sqs_env

__all__ = ["ledger", "moto_queues", "sqs_env"]
