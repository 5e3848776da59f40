"""How an upstream exchange can fail, in the terms the retry rules need.

Each class answers one question for `proxy.errors.classify`: could the backend have seen the
request (`ConnectFailed`, `ConnectTimeout` and `RequestNotSent` say certainly not), did it
answer at all, and was the connection a reused one that the backend had already closed.
"""

from __future__ import annotations


class UpstreamError(Exception):
    """Base of every failure of the upstream client."""


class ConnectFailed(UpstreamError):
    """The TCP connection could not be made (refused, unreachable): nothing reached the
    backend."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(f"connect failed: {os_error}")
        self.os_error = os_error


class ConnectTimeout(UpstreamError):
    """The TCP connection was not made within `timeouts.connect_seconds`."""


class RequestNotSent(UpstreamError):
    """The connection was made but closed before a byte of the request was written (the
    backend accepted and hung up at once, as one shutting down does): nothing reached it."""


class UpstreamTimeout(UpstreamError):
    """The backend was silent for `timeouts.upstream_idle_seconds`, or the whole exchange
    passed `timeouts.total_seconds`. The request may be executing."""


class FirstByteTimeout(UpstreamTimeout):
    """Not a byte of answer within `timeouts.upstream_first_byte_seconds` of the request
    going out: the backend stopped answering or its network vanished. The request may be
    executing, so only a replayable idempotent one goes elsewhere."""


class NoResponse(UpstreamError):
    """The connection broke, or the backend sent something unparsable, before a complete
    response head arrived. The request may have been processed."""


class StaleConnection(NoResponse):
    """A reused keep-alive connection was closed by the backend without a byte of response:
    the backend most likely closed it while idle and never read the request, but it cannot
    be proven, so only a replayable idempotent request is retried (see UpstreamClient.send)."""


class BrokenResponse(UpstreamError):
    """The backend broke off (or sent garbage) after the response head: the client's response
    is already under way and can only be aborted."""
