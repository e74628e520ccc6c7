"""Reading a worker's ``/metrics`` for ``aiosqsq top``: samples, rates between two scrapes,
and quantiles of histograms (as PromQL's ``histogram_quantile`` estimates them)."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


class ScrapeError(Exception):
    """The endpoint could not be read; the text says why and what to check."""


@dataclass(frozen=True)
class Scrape:
    """One reading: ``samples[(name, labels)] = value`` at ``at`` (monotonic seconds)."""

    at: float
    samples: Mapping[tuple[str, Labels], float] = field(default_factory=dict)

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        return sum(
            value
            for (sample, sample_labels), value in self.samples.items()
            if sample == name and labels.items() <= dict(sample_labels).items()
        )

    def label_values(self, name: str, label: str) -> list[str]:
        found = {dict(labels).get(label) for sample, labels in self.samples if sample == name}
        return sorted(value for value in found if value is not None)

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of a histogram, summed over other labels."""
        counts: dict[float, float] = defaultdict(float)
        for (sample, sample_labels), value in self.samples.items():
            wanted = dict(sample_labels)
            if sample != f"{name}_bucket" or not labels.items() <= wanted.items():
                continue
            counts[float(wanted["le"])] += value
        return sorted(counts.items())


def scrape(url: str, at: float, *, timeout_s: float = 5.0) -> Scrape:
    """Read ``url`` (a worker's /metrics). Raises ScrapeError."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            text = reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        raise ScrapeError(f"{url} answered HTTP {error.code}") from None
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ScrapeError(
            f"cannot read {url}: {reason}; is a worker running with --http-port "
            "(QUEUE_HTTP_PORT) on that address?"
        ) from None
    samples: dict[tuple[str, Labels], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    except ValueError as error:
        raise ScrapeError(f"{url} did not answer Prometheus metrics: {error}") from None
    return Scrape(at, samples)


def rate(before: Scrape | None, after: Scrape, name: str, **labels: str) -> float:
    """Per second between the two scrapes (0 without a first one)."""
    if before is None or after.at <= before.at:
        return 0.0
    change = after.total(name, **labels) - before.total(name, **labels)
    return max(0.0, change) / (after.at - before.at)


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``buckets`` (None without observations)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def recent(
    before: Scrape | None, after: Scrape, name: str, **labels: str
) -> list[tuple[float, float]]:
    """A histogram's buckets for the observations between two scrapes (all of them when
    nothing was observed between, or without a first scrape)."""
    now = after.buckets(name, **labels)
    if before is None:
        return now
    then = dict(before.buckets(name, **labels))
    delta = [(bound, count - then.get(bound, 0.0)) for bound, count in now]
    return delta if delta and delta[-1][1] > 0 else now
