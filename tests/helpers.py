"""Small helpers shared by the test packages."""


def bearer(token: str | None) -> dict:
    """The Authorization header for a raw token; none for None."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def database_url(connection) -> str:
    """A DATABASE_URL for another process to reach the database of this connection.

    Built from Django's own parameters, so the embedded server's unix socket
    (a host that is a path) works as well as host and port.
    """
    from urllib.parse import quote

    params = connection.get_connection_params()
    host = quote(params.get("host") or "", safe="")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgres://{quote(params.get('user') or '')}@{host}{port}/{params['dbname']}"



def call_trace(start, *, caller: dict, callee: dict, rng) -> list[tuple]:
    """One request of a service that calls another, linked by parent ids as SDKs link them.

    Rows of the caller's server span, its client span (as long as the call),
    then the callee's server span; `caller` and `callee` are span_row fields.
    """
    from tests.deployments.conftest import CLIENT, span_row

    root, call = rng.randbytes(8), rng.randbytes(8)
    common = {"trace_id": rng.randbytes(16), "start": start, "rng": rng}
    client = {key: callee[key] for key in ("route", "duration_ms", "error") if key in callee}
    return [span_row(**caller, span_id=root, **common),
            span_row(service=caller["service"], version=caller["version"], kind=CLIENT,
                     span_id=call, parent=root, **client, **common),
            span_row(**callee, parent=call, **common)]  # fmt: skip
