"""A deploy verdict told in the user's words, from its findings; no Django.

The headline leads with what users felt: which routes, how much worse in
plain units, and how many requests it touched. Statistics (p-values,
confidence, intervals) stay in the findings table and its hover text.

Invariants: only significant findings that got worse are told; a route's own
finding is told instead of the whole service's for the same metric; errors
come first (by requests affected), then new error types, then latency.
"""

ERROR_METRICS = ("error_rate", "rollout_error_rate")
LATENCY_NAMES = {"latency_p50": "p50", "latency_p95": "p95", "latency_p99": "p99"}
MOST_TOLD = 3
# Every metric is worse going up, but throughput, which is worse going down.
_WORSE = {"rollout_throughput": "down"}


def duration(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"


def count(number: float) -> str:
    return f"{round(number):,}"


def _where(route: str) -> str:
    return "the whole service" if route == "(whole service)" else route


def affected(finding: dict) -> int:
    """Requests the change touched: extra failures for errors, the requests themselves else."""
    if finding["metric"] in ERROR_METRICS:
        change = (finding["candidate"] or 0) - (finding["baseline"] or 0)
        return max(round(change / 100 * finding["candidate_n"]), 0)
    if finding["metric"] == "new_error_type":
        return round(finding["candidate"] or 0)
    return finding["candidate_n"]


def sentence(finding: dict) -> str:
    metric, where = finding["metric"], _where(finding["route"])
    base, cand, n = finding["baseline"], finding["candidate"], finding["candidate_n"]
    if metric in ERROR_METRICS:
        return (
            f"Errors on {where} rose from {base:.2f} % to {cand:.2f} % "
            f"(+{cand - base:.2f} pp): about {count(affected(finding))} more of "
            f"{count(n)} requests failed"
        )
    if metric == "new_error_type":
        return f"New error {finding['detail']} on {where}: {count(cand)} requests"
    if metric in LATENCY_NAMES and base is not None and cand is not None:
        return (
            f"{LATENCY_NAMES[metric]} latency on {where} rose from {duration(base)} to "
            f"{duration(cand)} (+{duration(cand - base)}) across {count(n)} requests"
        )
    if metric == "rollout_throughput" and base is not None and cand is not None:
        return f"Throughput during the rollout fell from {count(base)} to {count(cand)} req/min"
    return f"{metric} changed on {where}"


def _told(findings: list[dict]) -> list[dict]:
    worse = [
        f for f in findings if f["significant"] and f["direction"] == _WORSE.get(f["metric"], "up")
    ]
    with_routes = {f["metric"] for f in worse if f["route"] != "(whole service)"}
    kept = [f for f in worse if f["route"] != "(whole service)" or f["metric"] not in with_routes]

    def order(finding: dict) -> tuple:
        family = 0 if finding["metric"] in ERROR_METRICS else 1
        family = 1 if finding["metric"] == "new_error_type" else family
        family = 2 if finding["metric"] in LATENCY_NAMES else family
        return (family, -affected(finding), finding["route"])

    return sorted(kept, key=order)


def headline(findings: list[dict]) -> list[str]:
    """Up to MOST_TOLD sentences, worst first, and a count of the rest."""
    told = _told(findings)
    sentences = [sentence(finding) + "." for finding in told[:MOST_TOLD]]
    if len(told) > MOST_TOLD:
        rest = len(told) - MOST_TOLD
        sentences.append(f"And {rest} more finding{'s' if rest > 1 else ''} below.")
    return sentences
