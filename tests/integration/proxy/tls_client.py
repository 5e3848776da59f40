"""TLS clients for the tests: a verified keep-alive connection driven by hand, and the
openssl and curl command-line tools. Every one connects to 127.0.0.1; the server name goes
only into SNI and the Host header."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from cryptography import x509

TOOL_TIMEOUT_SECONDS = 20.0


class TlsConnection:
    """One verified TLS connection to 127.0.0.1 with SNI `server_name`, speaking HTTP/1.1
    keep-alive by hand (so a test can hold it open across a certificate change)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, server_name: str, ca: Path, *, maximum: ssl.TLSVersion | None = None
    ) -> TlsConnection:
        context = ssl.create_default_context(cafile=str(ca))
        if maximum is not None:
            context.maximum_version = maximum
        context.set_alpn_protocols(["h2", "http/1.1"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=server_name
        )
        return cls(reader, writer)

    @property
    def ssl_object(self) -> ssl.SSLObject:
        found = self.writer.get_extra_info("ssl_object")
        assert isinstance(found, ssl.SSLObject)
        return found

    def peer_serial(self) -> int:
        der = self.ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    async def get(self, path: str, host: str) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await self.writer.drain()
        async with asyncio.timeout(10):
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding") == "chunked":
                body = await self._chunked()
            else:
                body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def _chunked(self) -> bytes:
        body = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += (await self.reader.readexactly(size + 2))[:-2]
            if size == 0:
                return body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def run_tool(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TOOL_TIMEOUT_SECONDS):
        out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def served_chain(port: int, server_name: str | None) -> list[x509.Certificate]:
    """The chain the server sends, as openssl s_client receives it."""
    name = ["-servername", server_name] if server_name else ["-noservername"]
    code, out, err = await run_tool(
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", *name, "-showcerts",
        "-alpn", "http/1.1",
    )  # fmt: skip
    assert code == 0, err
    assert "ALPN protocol: http/1.1" in out
    return x509.load_pem_x509_certificates(out.encode())
