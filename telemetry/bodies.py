"""Reading a request body with its Content-Encoding, capped while it streams.

The cap applies to the decompressed size, and inflation stops as soon as the
cap is passed, so a gzip bomb costs at most the cap in memory.
"""

import zlib
from typing import BinaryIO

CHUNK_BYTES = 64 * 1024

# wbits per Content-Encoding: 16+ for a gzip header, plain for zlib "deflate".
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyTooLarge(ValueError):
    pass


class UnsupportedEncoding(ValueError):
    pass


class CorruptBody(ValueError):
    pass


def read_body(stream: BinaryIO, content_encoding: str, max_bytes: int) -> bytes:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return _read_plain(stream, max_bytes)
    if encoding not in _WBITS:
        raise UnsupportedEncoding(f"unsupported Content-Encoding {encoding[:40]!r}")
    return _read_compressed(stream, encoding, max_bytes)


def _read_plain(stream: BinaryIO, max_bytes: int) -> bytes:
    body = stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise BodyTooLarge(f"body is over {max_bytes} bytes")
    return body


def _read_compressed(stream: BinaryIO, encoding: str, max_bytes: int) -> bytes:
    inflater = _inflater(encoding)
    parts, size = [], 0
    while chunk := stream.read(CHUNK_BYTES):
        try:
            # Ask for one byte past the room left: getting it means the cap is passed.
            part = inflater.decompress(chunk, max_bytes - size + 1)
        except zlib.error as exc:
            raise CorruptBody(f"invalid {encoding} data: {exc}") from exc
        size += len(part)
        if size > max_bytes or inflater.unconsumed_tail:
            raise BodyTooLarge(f"decompressed body is over {max_bytes} bytes")
        parts.append(part)
        if inflater.eof:
            break
    if not inflater.eof:
        raise CorruptBody(f"truncated {encoding} data")
    return b"".join(parts)


def _inflater(encoding: str):
    if encoding == "deflate":
        # Some clients send raw deflate without the zlib header; accept both.
        return _AutoDeflate()
    return zlib.decompressobj(_WBITS[encoding])


class _AutoDeflate:
    """zlib-wrapped deflate (RFC 9110), falling back to raw deflate streams."""

    def __init__(self):
        self._inflater = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inflater is None:
            zlib_header = (
                len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] << 8 | data[1]) % 31 == 0
            )
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        return self._inflater.decompress(data, max_length)

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inflater.unconsumed_tail if self._inflater else b""

    @property
    def eof(self) -> bool:
        return bool(self._inflater and self._inflater.eof)
