"""JSON log lines: the keys every line has, the access log's switch and sampling, and the
health transition line. Output is captured from stdout and parsed line by line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from proxy.logging import ACCESS_LOGGER, AccessLog, configure_logging, log_health_transition
from proxy.model import Endpoint
from proxy.pool import HealthTransition
from proxy.settings import LogSettings

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
REQUIRED = ("timestamp", "level", "event", "message", "logger")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide loggers; put them back after each test."""
    names = ("", ACCESS_LOGGER, "aiohttp.access")
    saved = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level)
        for name in names
    }
    propagate = logging.getLogger(ACCESS_LOGGER).propagate
    yield
    for name, (handlers, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
    logging.getLogger(ACCESS_LOGGER).propagate = propagate


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    parsed = [json.loads(line) for line in out.splitlines()]
    assert all(isinstance(item, dict) for item in parsed)
    return parsed


def access(log: AccessLog, status: int = 200, **extra: object) -> None:
    log.log(
        method="GET",
        path="/items?id=1",
        status=status,
        upstream="default/web",
        backend="10.0.0.1:8080",
        duration_ms=1.23456,
        bytes_sent=512,
        request_id="req-1",
        client="192.0.2.7",
        retries=1,
        **extra,
    )


def test_every_line_has_the_required_keys(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings())
    logger = logging.getLogger("kubeferry.test")
    logger.info("plain message")
    logger.warning("started", extra={"event": "startup", "port": 3000})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed", extra={"event": "error"})

    plain, startup, error = lines(capsys)
    for line in (plain, startup, error):
        assert all(key in line for key in REQUIRED)
        assert RFC3339_UTC.match(line["timestamp"])
        assert line["logger"] == "kubeferry.test"
    assert plain["event"] == "log"
    assert (plain["level"], plain["message"]) == ("info", "plain message")
    assert (startup["level"], startup["event"], startup["port"]) == ("warning", "startup", 3000)
    assert error["level"] == "error"
    assert "RuntimeError: boom" in error["exc_info"]
    # Leading keys come first, in a fixed order, so lines read the same way by eye.
    assert list(plain)[:5] == list(REQUIRED)


def test_caller_fields_never_replace_required_keys(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings())
    logging.getLogger("kubeferry.test").info("x", extra={"level": "loud", "logger": "me"})
    access(AccessLog(LogSettings()), timestamp="yesterday")

    line, access_line = lines(capsys)
    assert (line["level"], line["logger"]) == ("info", "kubeferry.test")
    assert (line["extra_level"], line["extra_logger"]) == ("loud", "me")
    assert access_line["extra_timestamp"] == "yesterday"
    assert RFC3339_UTC.match(access_line["timestamp"])


def test_configure_twice_does_not_duplicate_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings())
    configure_logging(LogSettings())
    logging.getLogger("kubeferry.test").info("once")
    access(AccessLog(LogSettings()))

    assert [line["event"] for line in lines(capsys)] == ["log", "access"]


def test_level_setting_filters_ordinary_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings(level="warning"))
    logger = logging.getLogger("kubeferry.test")
    logger.info("hidden")
    logger.warning("shown")
    # The access log has its own switch; the root level does not silence it.
    access(AccessLog(LogSettings(level="warning")))

    assert [line["message"] for line in lines(capsys)] == ["shown", "GET /items?id=1 200"]


def test_aiohttp_access_log_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings(level="debug"))
    logging.getLogger("aiohttp.access").info("GET / 200")

    assert lines(capsys) == []


def test_access_line_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings())
    access(AccessLog(LogSettings()), route="web")

    (line,) = lines(capsys)
    assert line["event"] == "access"
    assert line["level"] == "info"
    assert line["logger"] == ACCESS_LOGGER
    assert line["message"] == "GET /items?id=1 200"
    assert {k: line[k] for k in line if k not in ("timestamp", "level", "message", "logger")} == {
        "event": "access",
        "method": "GET",
        "path": "/items?id=1",
        "status": 200,
        "upstream": "default/web",
        "backend": "10.0.0.1:8080",
        "duration_ms": 1.235,
        "bytes_sent": 512,
        "request_id": "req-1",
        "client": "192.0.2.7",
        "retries": 1,
        "route": "web",
    }


def test_access_log_sampling_is_driven_by_the_rng(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings())
    settings = LogSettings(access_sample_rate=0.25)
    log = AccessLog(settings, rng=random.Random(7))
    for _ in range(400):
        access(log)

    reference = random.Random(7)
    expected = sum(reference.random() < 0.25 for _ in range(400))
    assert len(lines(capsys)) == expected
    assert 0 < expected < 400


def test_server_errors_are_always_logged(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings())
    log = AccessLog(LogSettings(access_sample_rate=0.0), rng=random.Random(1))
    for status in (200, 404, 499, 500, 502, 504):
        access(log, status=status)

    assert [line["status"] for line in lines(capsys)] == [500, 502, 504]


def test_access_log_off_logs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings())
    log = AccessLog(LogSettings(access_log=False))
    access(log, status=200)
    access(log, status=503)

    assert lines(capsys) == []


@pytest.mark.parametrize(
    ("healthy", "level", "state"), [(True, "info", "up"), (False, "warning", "down")]
)
def test_health_transition_line(
    capsys: pytest.CaptureFixture[str], healthy: bool, level: str, state: str
) -> None:
    configure_logging(LogSettings())
    log_health_transition(
        HealthTransition(
            upstream="default/web",
            endpoint=Endpoint("10.0.0.2", 8080),
            healthy=healthy,
            reason="GET /healthz: 503",
            source="active",
        )
    )

    (line,) = lines(capsys)
    assert line["event"] == "health_transition"
    assert line["level"] == level
    assert line["upstream"] == "default/web"
    assert line["backend"] == "10.0.0.2:8080"
    assert line["healthy"] is healthy
    assert line["reason"] == "GET /healthz: 503"
    assert line["source"] == "active"
    assert f"is {state}" in line["message"]


async def test_access_lines_are_written_once_per_loop_iteration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(LogSettings())
    log = AccessLog(LogSettings())
    for status in (200, 201, 202):
        access(log, status=status)
    assert capsys.readouterr().out == ""  # batched until the loop comes round

    await asyncio.sleep(0)

    assert [line["status"] for line in lines(capsys)] == [200, 201, 202]


def test_reconfiguring_flushes_pending_access_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings())

    async def log_without_yielding() -> None:
        access(AccessLog(LogSettings()))
        configure_logging(LogSettings())  # replaces the handler holding the pending line

    asyncio.run(log_without_yielding())

    assert [line["event"] for line in lines(capsys)] == ["access"]


def test_access_line_is_the_same_through_any_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """The usual setup writes access lines without a LogRecord; another handler on the access
    logger gets real records instead. Both must produce the same line."""
    configure_logging(LogSettings())
    log = AccessLog(LogSettings())
    access(log, route="web", message="shadow")
    (fast,) = lines(capsys)

    extra_handler = logging.StreamHandler(io.StringIO())
    logging.getLogger(ACCESS_LOGGER).addHandler(extra_handler)
    try:
        access(log, route="web", message="shadow")
    finally:
        logging.getLogger(ACCESS_LOGGER).removeHandler(extra_handler)
    (slow,) = lines(capsys)

    assert extra_handler.stream.getvalue() == "GET /items?id=1 200\n"  # it got a real record
    assert RFC3339_UTC.match(slow["timestamp"])
    del fast["timestamp"], slow["timestamp"]
    assert list(fast.items()) == list(slow.items())
    assert fast["extra_message"] == "shadow"


@pytest.mark.parametrize(
    "path",
    [
        "/plain",
        '/quote"and\\backslash',
        "/ctl\x01\x1f\ttab",
        "/unicode-é-\u2028-😀",
        "/lone-\udc80",
    ],
)
def test_direct_access_line_equals_the_formatter_text(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    """The fast path writes the JSON text itself (no extras that collide); it must be the
    same text, byte for byte after the timestamp, as python-json-logger's formatter gives."""
    configure_logging(LogSettings())
    log = AccessLog(LogSettings())
    fields: dict[str, Any] = {
        "method": "GET", "path": path, "status": 200, "upstream": "default/web",
        "backend": "10.0.0.1:8080", "duration_ms": 1.5, "bytes_sent": 7,
        "request_id": "r", "client": "192.0.2.7", "retries": 0, "error": "x\ny",
    }  # fmt: skip
    log.log(**fields)
    fast = capsys.readouterr().out

    extra_handler = logging.StreamHandler(io.StringIO())
    logging.getLogger(ACCESS_LOGGER).addHandler(extra_handler)
    try:
        log.log(**fields)  # a second handler forces the LogRecord + formatter path
    finally:
        logging.getLogger(ACCESS_LOGGER).removeHandler(extra_handler)
    formatted = capsys.readouterr().out

    def without_timestamp(line: str) -> str:
        return re.sub(r'"timestamp": "[^"]*"', '"timestamp": ""', line)

    assert fast.count("\n") == formatted.count("\n") == 1
    assert without_timestamp(fast) == without_timestamp(formatted)
