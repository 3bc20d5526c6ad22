"""The OTLP/HTTP receivers as an ASGI application, for the event-loop server.

The event loop reads every request, so a slow or stalled client costs a
coroutine and its buffer, never a thread: only complete, authenticated
requests reach the thread pool that runs telemetry/receiver.py. A body that
takes longer than MONOENV_OTLP_BODY_TIMEOUT_SECONDS gets 408 and the
connection is closed; one larger than MONOENV_MAX_REQUEST_BYTES as sent gets
413 before it is read further. Other paths go to the fallback application
(Django's), so this port serves the dashboard too when the ports are one.
"""

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connections
from google.rpc import code_pb2

from telemetry import ingest, receiver

# A connection its thread used less than this long ago is not health-checked
# again (CONN_HEALTH_CHECKS): under load the check was a SELECT 1 round trip
# per request. One idle for longer is checked before use, as Django checks
# each request's; a connection that breaks meanwhile fails its store, whose
# batch is then spooled, not lost.
HEALTH_CHECK_AFTER_IDLE_SECONDS = 1.0
_thread_state = threading.local()


class _ClientGone(Exception):
    pass


class OtlpApplication:
    def __init__(self, fallback):
        self.fallback = fallback
        self.pool = ThreadPoolExecutor(
            max_workers=settings.MONOENV_OTLP_HTTP_THREADS, thread_name_prefix="otlp-http"
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        signal = receiver.SIGNALS.get(scope["path"]) if scope["type"] == "http" else None
        if signal is None:
            return await self.fallback(scope, receive, send)
        try:
            reply = await self._handle(signal, scope, receive)
        except _ClientGone:
            return
        await _send(send, reply)

    async def _handle(self, signal, scope, receive) -> receiver.Reply:
        headers = _headers(scope)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        reply = receiver.check_request(scope["method"], content_type)
        if reply is None:
            reply = await self._in_thread(
                receiver.check_token, content_type, headers.get("authorization")
            )
        if reply is not None:
            return reply
        body = await _read_body(receive, content_type)
        if isinstance(body, receiver.Reply):
            return body
        encoding = headers.get("content-encoding", "")
        return await self._in_thread(
            receiver.receive, signal, content_type, encoding, io.BytesIO(body)
        )

    async def _in_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, with_fresh_connections, function, *args
        )

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # A spool left by an earlier run is replayed from the start.
                ingest.start_replayer()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.pool.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


def with_fresh_connections(function, *args):
    """Run `function` on a pool thread as Django runs a request: with usable connections.

    The HTTP receivers' pool threads and the gRPC servicer's both go through
    here, so a connection used within HEALTH_CHECK_AFTER_IDLE_SECONDS skips
    its `SELECT 1` health check.
    """
    # What Django's request_started and request_finished signals do for WSGI:
    # connections past CONN_MAX_AGE or with errors are closed.
    close_old_connections()
    idle = time.monotonic() - getattr(_thread_state, "used_at", float("-inf"))
    if idle < HEALTH_CHECK_AFTER_IDLE_SECONDS:
        for connection in connections.all(initialized_only=True):
            connection.health_check_done = True
    try:
        return function(*args)
    finally:
        _thread_state.used_at = time.monotonic()


def _headers(scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def _read_body(receive, content_type: str) -> bytes | receiver.Reply:
    limit = settings.MONOENV_MAX_REQUEST_BYTES
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.MONOENV_OTLP_BODY_TIMEOUT_SECONDS
    chunks, size = [], 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
        except TimeoutError:
            reply = receiver.status_reply(
                content_type, 408, code_pb2.DEADLINE_EXCEEDED, "the request body came too slowly"
            )
            reply.headers["Connection"] = "close"
            return reply
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            reply = receiver.status_reply(
                content_type, 413, code_pb2.RESOURCE_EXHAUSTED, f"body is over {limit} bytes"
            )
            reply.headers["Connection"] = "close"
            return reply
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send, reply: receiver.Reply) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    headers += [(name.lower().encode(), value.encode()) for name, value in reply.headers.items()]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
