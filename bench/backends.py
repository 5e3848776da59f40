"""Three fast, identical backends: one nginx master with `worker_processes 1` and three
`listen` ports, each answering every path (including /healthz) with a small fixed body.

nginx rather than a Python server so the backends are never the bottleneck and every load
balancer sees exactly the same upstream behaviour.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.processes import ProcessGroup, free_port, wait_http_ok

BODY = "hello from backend {n}\\n"


def body(n: int) -> bytes:
    """What backend `n` answers, as the client receives it (BODY is nginx config text)."""
    return BODY.format(n=n).replace("\\n", "\n").encode()


def nginx_preamble(workdir: Path, name: str) -> str:
    """Top of an nginx config that keeps every file nginx writes inside `workdir`."""
    return f"""
worker_processes 1;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
"""


def nginx_http_preamble(workdir: Path, *, access_log: str = "off") -> str:
    # Without these nginx creates its temp directories under /var/lib/nginx.
    return f"""
  access_log {access_log};
  client_body_temp_path {workdir}/client_body;
  proxy_temp_path {workdir}/proxy_temp;
  fastcgi_temp_path {workdir}/fastcgi_temp;
  uwsgi_temp_path {workdir}/uwsgi_temp;
  scgi_temp_path {workdir}/scgi_temp;
  keepalive_requests 1000000;
"""


def backends_config(workdir: Path, ports: list[int]) -> str:
    servers = "\n".join(
        f'  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "{BODY.format(n=n)}"; }} }}'
        for n, port in enumerate(ports, start=1)
    )
    return (
        nginx_preamble(workdir, "backends")
        + "http {"
        + nginx_http_preamble(workdir)
        + "  default_type text/plain;\n"
        + servers
        + "\n}\n"
    )


def nginx_argv(workdir: Path, config: Path, name: str) -> list[str]:
    # -p and -e keep nginx away from its compiled-in prefix and /var/log/nginx entirely.
    return [
        "nginx",
        "-p",
        str(workdir),
        "-e",
        str(workdir / f"{name}-error.log"),
        "-c",
        str(config),
        "-g",
        "daemon off;",
    ]


def start_backends(
    processes: ProcessGroup, workdir: Path, count: int = 3, *, cpus: frozenset[int] | None = None
) -> tuple[list[int], subprocess.Popen[bytes]]:
    """Start the backends; return their ports once every one answers."""
    ports = [free_port() for _ in range(count)]
    config = workdir / "backends.conf"
    config.write_text(backends_config(workdir, ports))
    process = processes.start(
        "backends (nginx)", nginx_argv(workdir, config, "backends"), cpus=cpus
    )
    for port in ports:
        wait_http_ok(
            f"http://127.0.0.1:{port}/healthz",
            process=process,
            log=workdir / "backends-error.log",
        )
    return ports, process
