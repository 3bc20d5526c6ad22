"""The live stream goes on from where the backfill stopped, minute by minute, with no hole."""

import time

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demo import simulator

NS = 1_000_000_000


def test_the_stream_fills_the_time_the_backfill_took_and_keeps_the_schedule():
    exporters = []

    def in_memory(service):
        exporters.append(InMemorySpanExporter())
        return exporters[-1]

    lines = []
    simulation = simulator.Simulation(
        endpoint="http://127.0.0.1:9", api="http://127.0.0.1:9", token="", api_token="",
        rate=20, seed=2, log=lines.append, exporter=in_memory,
    )  # fmt: skip
    # As if sending minutes 0-1 had taken 130 s: minutes 2 and 3 have begun since.
    until_ns = time.time_ns() - 130 * NS
    minute = simulator.backfill(simulation, 2, until_ns=until_ns)
    streamed_from = time.time_ns()
    simulator.stream(simulation, minute, duration=1)
    simulation.flush()

    starts = sorted(
        span.start_time for exporter in exporters for span in exporter.get_finished_spans()
        if span.name in dict(simulator.ENTRY_ROUTES) and span.resource.attributes[
            "service.name"] == simulator.FRONTEND and span.start_time >= until_ns
    )  # fmt: skip
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    # 20 requests a second: a gap of 2 s has odds of e^-40.
    assert starts[0] - until_ns < 2 * NS and max(gaps) < 2 * NS
    assert starts[-1] >= streamed_from  # and on into the live part
    # Minute 2 (recommendations to 1%) came at its own time, then minute 3 (none).
    assert "flag recommendations: 1% of users on (posted)" in lines
    assert simulation.flags.percents["recommendations"] == 1
