"""JSON logs on stdout, one object per line.

Every line carries `timestamp` (RFC 3339, UTC), `level`, `event`, `message` and `logger`, then
whatever the caller passed in `extra=`. Callers name what happened with `extra={"event": ...}`;
lines without one get `event: "log"`.

The access log runs once per request, so it is built for cost: its own logger
(`kubeferry.access`, `propagate=False`, independent of the root level) and its own handler,
which writes the lines of one event-loop iteration in one system call. While that handler is
the logger's only one, AccessLog builds the line itself and skips the LogRecord; any other
setup gets real records. Sampling and the on/off switch are decided before anything is built.
"""

from __future__ import annotations

import asyncio
import json
import logging as _logging
import random
import sys
import time
import traceback
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from proxy.pool import HealthTransition
from proxy.settings import LogSettings

ACCESS_LOGGER = "kubeferry.access"
HEALTH_LOGGER = "kubeferry.health"

_LEVELS = {
    "debug": _logging.DEBUG,
    "info": _logging.INFO,
    "warning": _logging.WARNING,
    "error": _logging.ERROR,
}
# Attributes of a LogRecord that are not caller fields (taskName exists from Python 3.12).
_RESERVED = (*RESERVED_ATTRS, "taskName", "event")
_RESERVED_SET = frozenset(_RESERVED)
_LEADING = frozenset(("timestamp", "level", "event", "message", "logger"))
# The keys of an access line after the leading ones.
_ACCESS_KEYS = frozenset(
    (
        "method",
        "path",
        "status",
        "upstream",
        "backend",
        "duration_ms",
        "bytes_sent",
        "request_id",
        "client",
        "retries",
    )
)
# json's own string encoder (C, ASCII output), as JSONEncoder uses with its defaults.
_quote = encode_basestring_ascii


def _field_name(key: str) -> str:
    # A caller's field never replaces a key every line must have: it gets a prefix instead.
    return f"extra_{key}" if key in _LEADING else key


def _plain_extra(extra: dict[str, object]) -> bool:
    # Extra fields the text path writes exactly as the dict path would: none replaces a
    # standard key in place, none collides with a renamed leading key (`extra_message`).
    return _ACCESS_KEYS.isdisjoint(extra) and not any(k.startswith("extra_") for k in extra)


# Record attribute holding a prepared field dict (the access log's shortcut; see add_fields).
_FIELDS = "_kubeferry_fields"


class _StdoutHandler(_logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is at the time of each line, so a redirected or
    captured stdout (tests, `contextlib.redirect_stdout`) gets the lines, and a replaced
    stream that was closed never breaks logging."""

    _kubeferry = True  # marks the handlers configure_logging owns, for idempotence

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stdout; StreamHandler.__init__ assigns it


class _BatchingStdoutHandler(_StdoutHandler):
    """The access log's handler: lines formatted during one event-loop iteration go out in
    one write and one flush at the end of it, instead of a flush (a system call) per request.

    Nothing waits on a timer: the batch is written as soon as the loop gets round to it, so an
    idle proxy still shows its last line at once. Without a running loop, lines are written
    immediately. `logging.shutdown()` (at exit) flushes whatever is pending.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: _logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line)

    def write_line(self, line: str) -> None:
        """Queue one formatted line (AccessLog's fast path calls this directly)."""
        self.acquire()
        try:
            self._pending.append(line)
            if self._scheduled:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._scheduled = True
                loop.call_soon(self.flush)
        finally:
            self.release()
        if loop is None:
            self.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            self._scheduled = False
            if not self._pending:
                return
            text = "\n".join(self._pending) + "\n"
            self._pending = []
            stream = self.stream
            stream.write(text)
            stream.flush()
        except Exception:
            self._pending = []
            # Like Handler.handleError: never raise into the caller (here the event loop).
            if _logging.raiseExceptions:
                traceback.print_exc(file=sys.stderr)
        finally:
            self.release()


class JsonLineFormatter(JsonFormatter):
    """python-json-logger's formatter with our fixed leading keys and a reused encoder."""

    def __init__(self) -> None:
        super().__init__(reserved_attrs=list(_RESERVED))
        # json.dumps builds a new encoder on every call once `default` is set; one reused
        # encoder keeps the C fast path and saves that per line.
        self._encoder = json.JSONEncoder(default=_json_default)
        self._second_cache = (-1, "")

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: _logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        attributes = record.__dict__
        log_data["timestamp"] = self.timestamp_text(record.created)
        log_data["level"] = record.levelname.lower()
        log_data["event"] = attributes.get("event") or "log"
        log_data["message"] = record.message
        log_data["logger"] = record.name
        log_data.update(message_dict)
        prepared = attributes.get(_FIELDS)
        if prepared is not None:
            # An access record: its fields arrive as one dict, no need to sift the record.
            log_data.update(prepared)
            return
        # python-json-logger's merge_record_extra does this with a function call and two
        # attribute checks per key. (We use no rename_fields, static_fields or defaults.)
        skip = _RESERVED_SET
        for key, value in attributes.items():
            if key not in skip and key[0] != "_":
                log_data[_field_name(key)] = value

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        return self._encoder.encode(log_data)

    def jsonify_value(self, value: object) -> str:
        """One value as the line's encoder writes it (AccessLog's extra fields)."""
        return self._encoder.encode(value)

    def timestamp_text(self, created: float) -> str:
        """RFC 3339 UTC with milliseconds: `2024-05-01T12:00:00.123Z`."""
        # The date-and-time part changes once a second; format it only then.
        # One tuple, swapped whole, so two handlers sharing this formatter from two threads
        # never pair one second's text with another second.
        second = int(created)
        cached_second, text = self._second_cache
        if second != cached_second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second_cache = (second, text)
        millis = int((created - second) * 1000)
        return f"{text}.{millis:03d}Z"


def _json_default(value: object) -> str:
    # Log fields should be plain data; anything else is logged readably rather than crashing.
    return str(value)


# The access log's handler and formatter as configure_logging installed them; AccessLog writes
# straight to them while they are still the logger's only handler (see AccessLog.log).
_access_sink: tuple[_BatchingStdoutHandler, JsonLineFormatter] | None = None


def configure_logging(settings: LogSettings) -> None:
    """Send all logging to stdout as JSON lines. Safe to call again: it replaces its own
    handlers rather than adding more."""
    global _access_sink
    formatter = JsonLineFormatter()
    root = _logging.getLogger()
    _install(root, _StdoutHandler(), formatter)
    root.setLevel(_LEVELS[settings.level])

    access = _logging.getLogger(ACCESS_LOGGER)
    access_handler = _BatchingStdoutHandler()
    _install(access, access_handler, formatter)
    access.propagate = False
    # On/off and sampling are AccessLog's job; the root level must not silence it.
    access.setLevel(_logging.INFO)
    _access_sink = (access_handler, formatter)

    # aiohttp's own access log would duplicate ours, in a different shape.
    _logging.getLogger("aiohttp.access").setLevel(_logging.WARNING)


def _install(
    logger: _logging.Logger, handler: _StdoutHandler, formatter: _logging.Formatter
) -> None:
    for old in list(logger.handlers):
        if getattr(old, "_kubeferry", False):
            logger.removeHandler(old)
            old.flush()
            old.close()
    handler.setFormatter(formatter)
    logger.addHandler(handler)


class AccessLog:
    """One `event: "access"` line per request, unless turned off or sampled out.

    Responses with status 500 and above are always logged while the access log is on.
    """

    __slots__ = ("_enabled", "_logger", "_random", "_rate")

    def __init__(self, settings: LogSettings, *, rng: random.Random | None = None) -> None:
        self._enabled = settings.access_log
        self._rate = settings.access_sample_rate
        self._random = (rng or random.Random()).random
        self._logger = _logging.getLogger(ACCESS_LOGGER)

    def log(
        self,
        *,
        method: str,
        path: str,
        status: int,
        upstream: str,
        backend: str,
        duration_ms: float,
        bytes_sent: int,
        request_id: str,
        client: str,
        retries: int,
        **extra: object,
    ) -> None:
        # Decide before building anything: a sampled-out request costs two comparisons.
        if not self._enabled:
            return
        if status < 500 and self._rate < 1.0 and self._random() >= self._rate:
            return
        logger = self._logger
        if logger.disabled or not logger.isEnabledFor(_logging.INFO):
            return
        sink = _access_sink
        handlers = logger.handlers
        if (
            sink is not None
            and len(handlers) == 1
            and handlers[0] is sink[0]
            and (not extra or _plain_extra(extra))
        ):
            # Fast path, the normal case: the logger holds only the handler configure_logging
            # gave it. The line is written as text in the exact shape JsonLineFormatter gives
            # a record (same keys, order and escaping: json's own string encoder), skipping
            # the LogRecord, the handler chain, the dict and the generic encoder, which
            # together cost three times the text itself.
            handler, formatter = sink
            text = (
                f'{{"timestamp": "{formatter.timestamp_text(time.time())}", "level": "info", '
                f'"event": "access", "message": {_quote(f"{method} {path} {status}")}, '
                f'"logger": "{ACCESS_LOGGER}", "method": {_quote(method)}, '
                f'"path": {_quote(path)}, "status": {status!r}, '
                f'"upstream": {_quote(upstream)}, "backend": {_quote(backend)}, '
                f'"duration_ms": {round(duration_ms, 3)!r}, "bytes_sent": {bytes_sent!r}, '
                f'"request_id": {_quote(request_id)}, "client": {_quote(client)}, '
                f'"retries": {retries!r}'
            )
            if extra:
                encode = formatter.jsonify_value
                text += "".join(
                    f", {_quote(_field_name(key))}: {encode(value)}" for key, value in extra.items()
                )
            handler.write_line(text + "}")
            return
        # Any other logging setup: a real record through the logger, so its handlers and
        # filters apply. Built directly, it skips Logger.findCaller's stack walk; the fields
        # ride in one attribute that JsonLineFormatter unpacks after the leading keys it adds.
        fields: dict[str, object] = {
            "event": "access",
            "method": method,
            "path": path,
            "status": status,
            "upstream": upstream,
            "backend": backend,
            "duration_ms": round(duration_ms, 3),
            "bytes_sent": bytes_sent,
            "request_id": request_id,
            "client": client,
            "retries": retries,
        }
        for key, value in extra.items():
            fields[_field_name(key)] = value
        record = _logging.LogRecord(
            ACCESS_LOGGER, _logging.INFO, "", 0, "%s %s %d", (method, path, status), None
        )
        record.__dict__[_FIELDS] = fields
        logger.handle(record)


_health_logger = _logging.getLogger(HEALTH_LOGGER)


def log_health_transition(t: HealthTransition) -> None:
    """Log one transition (the pool reports only real changes, so one line per change)."""
    state = "up" if t.healthy else "down"
    _health_logger.log(
        _logging.INFO if t.healthy else _logging.WARNING,
        "backend %s of %s is %s (%s): %s",
        t.endpoint.key,
        t.upstream,
        state,
        t.source,
        t.reason,
        extra={
            "event": "health_transition",
            "upstream": t.upstream,
            "backend": t.endpoint.key,
            "healthy": t.healthy,
            "reason": t.reason,
            "source": t.source,
        },
    )
