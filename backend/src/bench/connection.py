"""A lean keep-alive HTTP/1.1 client connection, for load that should measure the server.

With dozens of concurrent clients on a small machine, a full client library (httpx) spends
more CPU per request than the service does, so the load would measure the client, and the
service would never see the request rates at which races show. This speaks just what the
service answers: one request at a time per connection, bodies with Content-Length or chunked,
`Connection: close` honoured by opening a new connection for the next request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ConnectionDropped(Exception):
    """The server closed the connection before a complete answer arrived."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    """Lower-case names; the last value of a repeated header."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One client's connection to `host:port`, opened on first use and after a close."""

    def __init__(self, host: str, port: int, headers: Mapping[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: Any = None) -> Reply:
        """Send one request (`body` as JSON unless None) and read its whole answer.

        On any failure the connection is closed, so the next request starts on a fresh one.
        """
        try:
            return await self._request(method, target, body)
        except BaseException:
            self.close()
            raise

    async def _request(self, method: str, target: str, body: Any) -> Reply:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._fixed}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        writer.write(head.encode("latin-1") + b"\r\n" + payload)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionDropped("the server closed the connection without answering")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            content = await self._chunks(reader)
        else:
            content = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, headers, content)

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        content = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            content += (await reader.readexactly(size + 2))[:-2]  # without its CRLF
        await reader.readline()  # the blank line after the last chunk
        return content

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
