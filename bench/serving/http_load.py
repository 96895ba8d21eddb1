"""A lean HTTP/1.1 load generator for the REST leg (like wrk, in asyncio).

The load generator shares the two cores with the system under test; httpx spent ~3 ms of CPU per
upload, as much as a whole service hop, so it capped the measured throughput. This client sends
pre-encoded multipart requests over keep-alive connections (one per concurrent client) and reads
each response by its Content-Length. It still checks every answer: status 2xx and a JSON body with
a label, else the call raises like httpx's raise_for_status.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit


class HttpError(Exception):
    pass


def multipart_upload(host: str, path: str, token: str, name: str, data: bytes, content_type: str) -> bytes:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    return head + body


# uvicorn closes a keep-alive connection after 5 s idle: reconnect before that.
IDLE_RECONNECT_S = 3.0


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    async def request(self, raw: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
        if self.writer is not None and time.monotonic() - self.last_used > IDLE_RECONNECT_S:
            self.close()
        reused = self.writer is not None
        try:
            return await asyncio.wait_for(self._request(raw), timeout)
        except asyncio.IncompleteReadError as exc:
            self.close()
            if reused and not exc.partial:  # the server had closed the idle connection: nothing was read
                return await self.request(raw, timeout)
            raise
        except BaseException:
            self.close()  # a half-read answer must not be mistaken for the next one
            raise
        finally:
            self.last_used = time.monotonic()

    async def _request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" not in headers:
            raise HttpError(f"answer without Content-Length (status {status})")
        body = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def upload_call(base_url: str, token: str, files: list[Path], concurrency: int = 64):
    """call(i) -> POST /api/v1/predictions with files[i % n], on connection i % concurrency."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = [multipart_upload(f"{host}:{port}", "/api/v1/predictions", token, f.name, f.read_bytes(), "image/jpeg")
                for f in files]
    connections = [Connection(host, port) for _ in range(concurrency)]

    async def call(i: int) -> dict:
        status, body = await connections[i % concurrency].request(requests[i % len(requests)])
        if not 200 <= status < 300:
            raise HttpError(f"HTTP {status}: {body[:200]!r}")
        answer = json.loads(body)
        if "label" not in answer:
            raise HttpError(f"answer without a label: {body[:200]!r}")
        return answer

    def close() -> None:
        for c in connections:
            c.close()

    call.close = close
    return call
