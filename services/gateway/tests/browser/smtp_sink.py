"""A tiny real SMTP server (asyncio) that keeps received messages, for following e-mail links in tests."""

from __future__ import annotations

import asyncio
import email
import quopri
import re
import threading
from email import policy


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.messages: list[email.message.EmailMessage] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._session, self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write((line + "\r\n").encode())

        say("220 sink ESMTP")
        while True:
            raw = await reader.readline()
            if not raw:
                break
            cmd = raw.decode(errors="replace").strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250-sink")
                say("250 8BITMIME")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                say("250 OK")
            elif verb == "DATA":
                say("354 end with .")
                await writer.drain()
                lines = []
                while True:
                    line = await reader.readline()
                    if line in (b".\r\n", b".\n", b""):
                        break
                    lines.append(line[1:] if line.startswith(b"..") else line)
                self.messages.append(email.message_from_bytes(b"".join(lines), policy=policy.default))
                say("250 queued")
            elif verb == "QUIT":
                say("221 bye")
                await writer.drain()
                break
            else:
                say("502 not implemented")
            await writer.drain()
        writer.close()

    def links(self) -> list[str]:
        found = []
        for msg in self.messages:
            for part in msg.walk():
                if part.get_content_maintype() == "text":
                    text = part.get_content()
                    if "=\n" in text or "=3D" in text:
                        text = quopri.decodestring(text.encode()).decode(errors="replace")
                    found += re.findall(r"https?://[^\s\"'<>]+", text)
        return found
