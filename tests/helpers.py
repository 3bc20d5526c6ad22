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
