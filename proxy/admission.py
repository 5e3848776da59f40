"""What a reverse proxy refuses before routing: checks on the request head alone.

Each check answers with a status and a short reason, or passes. Refusals close the
connection, because the request body (if any) was not read and the next bytes on the
connection cannot be trusted to start a request.

Choices documented here rather than in code paths:
- CONNECT gets 405: tunnelling is a forward proxy's job.
- Absolute-form (`GET http://host/ HTTP/1.1`) and asterisk-form (`OPTIONS *`) targets get
  400: routing by the named host could make this an open forward proxy, and routing by path
  only would silently disagree with the target the client named.
- Transfer-Encoding together with Content-Length, several Content-Length fields, or a transfer
  coding other than `chunked` get 400 (RFC 9112 section 6.3): two parsers could frame such a
  message differently, which is how requests are smuggled. aiohttp's parser already rejects
  most of these; the check here is the backstop, and nothing ambiguous is ever forwarded.
- A Content-Length over `limits.max_body_bytes` gets 413 before a byte of body is read;
  chunked bodies are counted while streaming (proxy.body).
"""

from __future__ import annotations

from aiohttp import web


def refusal(request: web.BaseRequest, *, max_body_bytes: int | None) -> tuple[int, str] | None:
    """(status, reason) if the request must not be forwarded, else None."""
    if request.method == "CONNECT":
        return 405, "CONNECT is not supported: this is a reverse proxy"
    if not request.raw_path.startswith("/"):
        return 400, "Request target must be a path (origin-form)"
    headers = request.headers
    if "Transfer-Encoding" in headers and (
        "Content-Length" in headers or headers["Transfer-Encoding"].strip().lower() != "chunked"
    ):
        return 400, "Conflicting or unsupported message framing"
    if len(headers.getall("Content-Length", ())) > 1:
        return 400, "Conflicting or unsupported message framing"
    length = request.content_length
    if max_body_bytes is not None and length is not None and length > max_body_bytes:
        return 413, "Request body too large"
    return None
