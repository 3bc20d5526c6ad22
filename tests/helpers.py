"""Small helpers shared by the test packages."""


def bearer(token: str | None) -> dict:
    """The Authorization header for a raw token; none for None."""
    return {"Authorization": f"Bearer {token}"} if token else {}
