"""The load balancers under test: how to configure and start each over the same backends.

Each is one worker / one thread, on its own loopback port, with no request logging unless the
row says so, and with keep-alive to the backends (nginx `keepalive 32`, HAProxy
`http-reuse always`; kubeferry pools upstream connections itself).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.backends import nginx_argv, nginx_http_preamble, nginx_preamble
from bench.machine import interpreter_of

# The directory holding the bench package, for `python -m bench.aiohttp_floor` run by
# kubeferry's interpreter (which need not have this checkout on its path).
_CHECKOUT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything needed to start one load balancer."""

    argv: list[str]
    port: int
    env: dict[str, str] | None = None
    # Where the process's stdout goes: None discards it.
    stdout_path: Path | None = None
    log_path: Path | None = None  # shown when it fails to start
    notes: tuple[str, ...] = field(default=())


def nginx_lb(workdir: Path, port: int, backends: list[int]) -> Launch:
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in backends)
    config = (
        nginx_preamble(workdir, "nginx-lb")
        + "http {"
        + nginx_http_preamble(workdir)
        + "  upstream backends {\n"
        + servers
        + "    keepalive 32;\n  }\n"
        + f"  server {{\n    listen 127.0.0.1:{port};\n"
        + "    location / {\n"
        + "      proxy_pass http://backends;\n"
        + "      proxy_http_version 1.1;\n"
        + '      proxy_set_header Connection "";\n'
        + "    }\n  }\n}\n"
    )
    path = workdir / "nginx-lb.conf"
    path.write_text(config)
    return Launch(
        nginx_argv(workdir, path, "nginx-lb"), port, log_path=workdir / "nginx-lb-error.log"
    )


def haproxy_lb(workdir: Path, port: int, backends: list[int]) -> Launch:
    servers = "".join(f"  server b{n} 127.0.0.1:{p}\n" for n, p in enumerate(backends, 1))
    config = f"""global
  nbthread 1
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always

frontend bench
  bind 127.0.0.1:{port}
  default_backend backends

backend backends
  balance roundrobin
{servers}"""
    path = workdir / "haproxy.cfg"
    path.write_text(config)
    # -db: stay in the foreground, so the process we started is the one serving.
    return Launch(["haproxy", "-db", "-f", str(path)], port)


def kubeferry_lb(
    workdir: Path,
    port: int,
    backends: list[int],
    *,
    executable: Path,
    access_log: bool,
) -> Launch:
    argv = [str(executable), "proxy"]
    for p in backends:
        argv += ["--backend", f"http://127.0.0.1:{p}"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--admin-port", "0"]
    env = dict(os.environ)
    env["KUBEFERRY_LOG__ACCESS_LOG"] = "true" if access_log else "false"
    name = "kubeferry-access" if access_log else "kubeferry"
    # JSON lines go to a real file, not /dev/null, so the run pays for the writes.
    stdout = workdir / f"{name}.jsonl"
    return Launch(argv, port, env=env, stdout_path=stdout, log_path=workdir / f"{name}.stderr")


def _bench_module(
    kubeferry: Path, port: int, module: str, args: list[str], log_path: Path
) -> Launch:
    """`python -m module --port N args` on the interpreter `kubeferry` runs on (same Python,
    aiohttp and uvloop), with this checkout importable."""
    python = interpreter_of(kubeferry)
    if python is None:
        # Not a failure to hide: the row would measure some other interpreter.
        return Launch([f"(no Python interpreter found in {kubeferry}'s #! line)"], port)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_CHECKOUT), env.get("PYTHONPATH", "")) if p)
    argv = [str(python), "-m", module, "--port", str(port), *args]
    return Launch(argv, port, env=env, log_path=log_path)


def aiohttp_floor(workdir: Path, port: int, backends: list[int], *, kubeferry: Path) -> Launch:
    """bench/aiohttp_floor.py on kubeferry's interpreter; it ignores the backends: it answers
    every request itself."""
    return _bench_module(
        kubeferry, port, "bench.aiohttp_floor", [], workdir / "aiohttp-floor.stderr"
    )


def bare_proxy(
    workdir: Path, port: int, backends: list[int], *, kubeferry: Path, client: str = "kubeferry"
) -> Launch:
    """bench/bare_proxy.py on kubeferry's interpreter, over the same backends, with
    kubeferry's upstream client or the minimal one (bench.minimal_upstream)."""
    args = ["--client", client]
    for backend in backends:
        args += ["--backend", str(backend)]
    log = workdir / f"bare-proxy-{client}.stderr"
    return _bench_module(kubeferry, port, "bench.bare_proxy", args, log)


LaunchFactory = Callable[[Path, int, list[int]], Launch]
