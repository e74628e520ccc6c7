"""``aiosqsq top``: a live view of a running worker (or supervisor), read from its
``/metrics`` every few seconds: per queue, messages/s by outcome, in flight, lag and
handler duration p50/p99; SQS requests/s and errors/s per operation.

Ctrl-C ends it (exit 0). An endpoint that cannot be read ends it with one line saying
what to check (exit 1). Needs prometheus-client (``aiosqsq[prometheus]``) for the parser.
"""

from __future__ import annotations

import time

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from aiosqsq.exit_codes import ExitCode
from aiosqsq.observability.scrape import Scrape, ScrapeError, quantile, rate, recent, scrape

OUTCOMES = ("succeeded", "retried", "error", "dead_lettered", "released", "lease_lost", "shutdown")
_HEADINGS = ("ok/s", "retried/s", "error/s", "dlq/s", "released/s", "lost/s", "shutdown/s")


@click.command()
@click.option(
    "--url",
    default="http://127.0.0.1:9000",
    show_default=True,
    help="The worker's HTTP endpoint (aiosqsq run --http-port); /metrics is added.",
)
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between two readings.",
)
@click.option("--once", is_flag=True, help="Print one reading (rates over one interval), exit.")
def top(url: str, interval: float, once: bool) -> None:
    """A live view of a running worker, from its /metrics."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "aiosqsq top reads Prometheus metrics: pip install 'aiosqsq[prometheus]'"
        ) from None
    target = url.rstrip("/")
    if not target.endswith("/metrics"):
        target += "/metrics"
    console = Console()
    try:
        before = scrape(target, time.monotonic())
        if once:
            time.sleep(interval)
            console.print(render(target, before, scrape(target, time.monotonic()), interval))
            return
        with Live(render(target, None, before, interval), console=console) as live:
            while True:
                time.sleep(interval)
                after = scrape(target, time.monotonic())
                live.update(render(target, before, after, interval))
                before = after
    except ScrapeError as error:
        click.echo(f"Error: {error}", err=True)
        raise SystemExit(ExitCode.UNEXPECTED_ERROR) from None
    except KeyboardInterrupt:
        return


def render(url: str, before: Scrape | None, after: Scrape, interval: float) -> Group:
    """The view of one reading: a queue table and an SQS table."""
    queues = Table(title="queues", title_justify="left")
    for heading in (
        "queue",
        "recv/s",
        *_HEADINGS,
        "in flight",
        "lag p50",
        "lag p99",
        "handler p50",
        "handler p99",
    ):
        queues.add_column(heading, justify="left" if heading == "queue" else "right")
    for queue in after.label_values("aiosqsq_messages_received_total", "queue"):
        lag = recent(before, after, "aiosqsq_message_lag_seconds", queue=queue)
        handler = recent(before, after, "aiosqsq_handler_duration_seconds", queue=queue)
        queues.add_row(
            Text(queue),
            _rate(rate(before, after, "aiosqsq_messages_received_total", queue=queue)),
            *(
                _rate(
                    rate(
                        before,
                        after,
                        "aiosqsq_messages_processed_total",
                        queue=queue,
                        outcome=outcome,
                    )
                )
                for outcome in OUTCOMES
            ),
            f"{after.total('aiosqsq_messages_in_flight', queue=queue):.0f}",
            _seconds(quantile(0.5, lag)),
            _seconds(quantile(0.99, lag)),
            _seconds(quantile(0.5, handler)),
            _seconds(quantile(0.99, handler)),
        )
    sqs = Table(title="SQS requests", title_justify="left")
    for heading in ("operation", "requests/s", "errors/s", "p50", "p99"):
        sqs.add_column(heading, justify="left" if heading == "operation" else "right")
    for operation in after.label_values("aiosqsq_sqs_requests_total", "operation"):
        durations = recent(
            before, after, "aiosqsq_sqs_request_duration_seconds", operation=operation
        )
        sqs.add_row(
            Text(operation),
            _rate(rate(before, after, "aiosqsq_sqs_requests_total", operation=operation)),
            _rate(
                rate(
                    before, after, "aiosqsq_sqs_requests_total", operation=operation, result="error"
                )
            ),
            _seconds(quantile(0.5, durations)),
            _seconds(quantile(0.99, durations)),
        )
    lag_s = after.total("aiosqsq_event_loop_lag_seconds")
    title = Text(f"aiosqsq top  {url}  every {interval:g} s  event loop lag {lag_s * 1e3:.0f} ms")
    return Group(title, queues, sqs)


def _rate(value: float) -> str:
    return f"{value:.1f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.1f} s"
