"""The OTLP/HTTP server: gunicorn's master over uvicorn event-loop workers.

gunicorn keeps what the stack relies on (several ports, a master that
replaces a killed worker, graceful stops); each worker serves every
connection from one event loop, so slow clients hold no thread. On top of
uvicorn's httptools protocol this adds:

- a header read timeout (MONOENV_OTLP_HEADER_TIMEOUT_SECONDS): a connection
  whose request headers are not complete in time is closed, with a 408 if it
  had sent anything (uvicorn has none of its own; the body timeout is the
  application's, see telemetry/asgi.py);
- an answer to HTTP/2 clients, gRPC ones above all: the Python SDK defaults
  to gRPC, so exporters pointed at this port send the HTTP/2 preface. They
  get a gRPC status (UNIMPLEMENTED, not retried) or an HTTP/2 505 whose
  message names the fix, and the server logs it, at most once a minute per
  client address.
"""

import asyncio
import logging
import time
import warnings

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

with warnings.catch_warnings():
    # It moved to the uvicorn-worker package; the class is the same.
    warnings.simplefilter("ignore", DeprecationWarning)
    from uvicorn.workers import UvicornWorker

logger = logging.getLogger(__name__)

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HTTP2_LOG_SECONDS = 60
_GRPC_UNIMPLEMENTED = "12"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)
_http2_logged: dict[str, float] = {}


def http2_advice(port: int | None) -> str:
    grpc_port = settings.MONOENV_OTLP_GRPC_PORT
    return (
        f"This is Monoenv's OTLP/HTTP port{f' {port}' if port else ''}, which speaks HTTP/1.1: "
        f"send OTLP/gRPC to port {grpc_port}, or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
    )


class OtlpHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and an HTTP/2 answer."""

    def connection_made(self, transport):
        super().connection_made(transport)
        # Bytes held while they could still be the start of the HTTP/2 preface.
        self._sniffed: bytes | None = b""
        self._received_any = False
        self._header_timer = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        if self._sniffed is not None:
            data = self._sniffed + data
            if HTTP2_PREFACE.startswith(data):
                if len(data) < len(HTTP2_PREFACE):
                    self._sniffed = data
                    return
            if data.startswith(HTTP2_PREFACE):
                self._switch_to_http2(data)
                return
            self._sniffed = None
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc):
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(
            settings.MONOENV_OTLP_HEADER_TIMEOUT_SECONDS, self._headers_too_slow
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._received_any and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    def _switch_to_http2(self, data: bytes) -> None:
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        self.connections.discard(self)
        answer = Http2Answer(self.transport, self.server, self.client)
        self.transport.set_protocol(answer)
        answer.data_received(data)


class Http2Answer(asyncio.Protocol):
    """Answers every HTTP/2 request on the connection with advice, and nothing else."""

    def __init__(self, transport, server, client):
        self.transport = transport
        self.port = server[1] if server else None
        self.client_host = client[0] if client else "unknown"
        self.connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.connection.initiate_connection()
        self.transport.write(self.connection.data_to_send())
        self.loop = asyncio.get_event_loop()
        self._idle = None
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self._arm_idle_timer()
        try:
            events = self.connection.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.transport.write(self.connection.data_to_send())
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._answer(event.stream_id, dict(event.headers))
            elif isinstance(event, h2.events.DataReceived):
                # Let the client finish sending, or it would stall on flow control.
                self.connection.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
        self.transport.write(self.connection.data_to_send())

    def _answer(self, stream_id: int, headers: dict) -> None:
        advice = http2_advice(self.port)
        is_grpc = headers.get("content-type", "").startswith("application/grpc")
        self._log(headers.get(":path", ""), is_grpc)
        try:
            if is_grpc:
                trailers_only = [
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("grpc-status", _GRPC_UNIMPLEMENTED),
                    ("grpc-message", advice),
                ]
                self.connection.send_headers(stream_id, trailers_only, end_stream=True)
                return
            body = advice.encode() + b"\n"
            self.connection.send_headers(
                stream_id,
                [(":status", "505"), ("content-type", "text/plain; charset=utf-8"),
                 ("content-length", str(len(body)))],
            )  # fmt: skip
            self.connection.send_data(stream_id, body, end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.FlowControlError):
            pass  # The client reset the stream; nothing to answer.

    def _log(self, path: str, is_grpc: bool) -> None:
        now = time.monotonic()
        if now - _http2_logged.get(self.client_host, float("-inf")) < HTTP2_LOG_SECONDS:
            return
        _http2_logged[self.client_host] = now
        logger.warning(
            "%s at %s called %s over HTTP/2. %s.",
            "A gRPC client" if is_grpc else "An HTTP/2 client",
            self.client_host,
            path[:200] or "/",
            http2_advice(self.port),
        )

    def _arm_idle_timer(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.loop.call_later(
            settings.MONOENV_OTLP_HEADER_TIMEOUT_SECONDS, self._close_idle
        )

    def _close_idle(self) -> None:
        if not self.transport.is_closing():
            self.connection.close_connection()
            self.transport.write(self.connection.data_to_send())
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if self._idle is not None:
            self._idle.cancel()


# Seconds an idle keep-alive connection stays open on the OTLP/HTTP port. The
# SDKs export every 5 s by default (OTEL_BSP_SCHEDULE_DELAY); gunicorn's
# keep-alive, which uvicorn's worker takes, is 2 s, so every export paid a new
# TCP connection. An idle connection costs the event loop a socket, no thread.
KEEP_ALIVE_SECONDS = 15


class OtlpWorker(UvicornWorker):
    """gunicorn worker class: `-k telemetry.http_server.OtlpWorker`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A longer --keep-alive given to gunicorn still wins.
        self.config.timeout_keep_alive = max(self.cfg.keepalive, KEEP_ALIVE_SECONDS)

    CONFIG_KWARGS = {
        "loop": "auto",
        "http": OtlpHttpProtocol,
        "lifespan": "on",
        # Monoenv logs through Django's LOGGING; gunicorn's access log is opt-in.
        "server_header": False,
    }
