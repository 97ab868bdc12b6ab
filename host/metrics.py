"""The agent's metrics: counters and latency histograms, cheap to update on the hot path, read by Prometheus.

prometheus_client's own Counter and Histogram take a lock and do several attribute lookups per update; on
the agent's hot path an update here is one list-index increment (`LatencyHistogram.observe_ns`: a bisect
and an add). The values are turned into Prometheus metric families only when scraped (`AgentCollector`,
registered in a private CollectorRegistry), from the control API's thread: a scrape reads plain ints, so it
may see one update half-applied across two metrics, never a torn value.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

__all__ = ["AgentMetrics", "LatencyHistogram"]

# 1 us .. 10 ms, roughly 1-2-5 per decade, in ns.
DEFAULT_BOUNDS_NS = (1_000, 2_000, 3_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
                     2_000_000, 5_000_000, 10_000_000)  # fmt: skip


class LatencyHistogram:
    """Counts of observations per bucket (upper bounds in ns, inclusive), their sum and count, and the last
    `keep` observations themselves (a preallocated ring) for exact percentiles in a run's summary."""

    def __init__(
        self, name: str, help_text: str, bounds_ns: tuple[int, ...] = DEFAULT_BOUNDS_NS, keep: int = 1 << 20
    ) -> None:
        if list(bounds_ns) != sorted(set(bounds_ns)):
            raise ValueError(f"histogram {name}: bucket bounds must increase strictly, got {bounds_ns}")
        self.name = name
        self.help = help_text
        self.bounds = bounds_ns
        self.counts = [0] * (len(bounds_ns) + 1)  # the last bucket: above every bound (+Inf)
        self.sum_ns = 0
        self.count = 0
        self._ring = np.zeros(keep, dtype=np.int64)

    def observe_ns(self, value: int) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum_ns += value
        if self._ring.size:
            self._ring[self.count % self._ring.size] = value
        self.count += 1

    def percentiles_us(self, *ps: float) -> dict[str, float | None]:
        """{"p50": us, ...} over the observations kept (the last `keep`); None when there are none."""
        kept = self._ring[: min(self.count, self._ring.size)]
        names = [f"p{p:g}" for p in ps]
        if not kept.size:
            return dict.fromkeys(names)
        values = np.percentile(kept, ps) / 1e3
        return {name: round(float(v), 3) for name, v in zip(names, values)}

    def family(self) -> HistogramMetricFamily:
        buckets, total = [], 0
        for bound, n in zip((*self.bounds, None), self.counts):
            total += n
            buckets.append(("+Inf" if bound is None else repr(bound / 1e9), total))
        return HistogramMetricFamily(self.name, self.help, buckets=buckets, sum_value=self.sum_ns / 1e9)


class AgentMetrics:
    """Everything the agent counts. Hot-path code increments the attributes directly."""

    def __init__(self) -> None:
        self.bbo_updates = 0
        self.orders_sent: Counter[str] = Counter()  # by request kind
        self.risk_rejects: Counter[str] = Counter()  # by reason
        self.fills = 0
        self.filled_shares = 0
        self.gateway_anomalies: Counter[str] = Counter()
        self.tick_to_order = LatencyHistogram(
            "wirebook_tick_to_order_seconds", "BBO record available to OUCH bytes handed to the socket"
        )
        self.tick_to_sent = LatencyHistogram(
            "wirebook_tick_to_sent_seconds", "BBO record available to the socket write returning"
        )
        self.risk_check = LatencyHistogram("wirebook_risk_check_seconds", "one pre-trade risk check")
        self.gauges: dict[str, Callable[[], float]] = {}  # name -> reader, e.g. position, P&L, kill switch
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric, as scraped."""
        return generate_latest(self.registry)


class _Collector:
    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator:
        m = self.metrics
        yield _counter("wirebook_bbo_updates", "BBO update records received from the card", m.bbo_updates)
        yield _counter("wirebook_fills", "executions received", m.fills)
        yield _counter("wirebook_filled_shares", "shares executed", m.filled_shares)
        yield _labelled("wirebook_orders_sent", "OUCH requests sent, by kind", "kind", m.orders_sent)
        yield _labelled("wirebook_risk_rejects", "requests refused by the risk engine, by reason", "reason",
                        m.risk_rejects)  # fmt: skip
        yield _labelled("wirebook_gateway_anomalies", "untrusted exchange input handled, by kind", "kind",
                        m.gateway_anomalies)  # fmt: skip
        yield m.tick_to_order.family()
        yield m.tick_to_sent.family()
        yield m.risk_check.family()
        for name, read in list(m.gauges.items()):
            yield GaugeMetricFamily(name, name.replace("_", " "), value=float(read()))


def _counter(name: str, help_text: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def _labelled(name: str, help_text: str, label: str, values: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family
