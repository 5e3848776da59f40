"""The TLS section: nginx and kubeferry terminating HTTPS with the same certificate over the
same three backends, one worker each, measured in interleaved rounds (median round per row):

  keep-alive   `wrk` over HTTPS, connections kept open: the cost of encrypting the traffic
  handshakes   `openssl s_time -new` clients in parallel: every connection is a new, full
               handshake (no resumption), closed right after; no HTTP request

The certificate is a P-256 ECDSA leaf signed by a throwaway CA (the common choice of ACME
clients today). kubeferry runs with its access log off in both, so the rows compare the TLS
stacks (OpenSSL under nginx's event loop vs under Python's asyncio/uvloop ssl), not logging.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.backends import nginx_argv, nginx_http_preamble, nginx_preamble, start_backends
from bench.loadbalancers import median_run
from bench.options import Options
from bench.peers import Launch
from bench.processes import BenchError, CpuPlan, ProcessGroup, free_port, group_cpu_seconds
from bench.report import Row, Section, format_seconds, markdown_table, text_table
from bench.wrk import WrkResult, run_wrk

NGINX = "nginx (TLS)"
KUBEFERRY = "kubeferry (TLS, access log off)"
KUBEFERRY_PLAIN = "same kubeferry, plain HTTP port"
# s_time clients run at once in the handshake runs, on the load CPU with the backends. Each
# waits for its handshake before starting the next, so one or two leave the server idle
# between them (measured: nginx at about 10% CPU with two).
HANDSHAKE_CLIENTS = 6
MAX_ERROR_SHARE = 0.01
_S_TIME = re.compile(r"^(\d+) connections in [0-9.]+s;", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class HandshakeRun:
    handshakes: int
    seconds: float
    server_cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.handshakes / self.seconds

    @property
    def cpu_per_handshake_seconds(self) -> float | None:
        return self.server_cpu_seconds / self.handshakes if self.handshakes else None


@dataclass(slots=True)
class _Contender:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    plain_port: int | None = None  # kubeferry's HTTP listener: what TLS costs on top
    keepalive: list[WrkResult] = field(default_factory=list)
    plain: list[WrkResult] = field(default_factory=list)
    handshakes: list[HandshakeRun] = field(default_factory=list)


def write_certificate(workdir: Path) -> tuple[Path, Path]:
    """A CA-signed P-256 leaf for 127.0.0.1 and localhost; the chain and key files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeferry bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = workdir / "tls.crt"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_path = workdir / "tls.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain, key_path


def nginx_tls(workdir: Path, port: int, backends: list[int], cert: Path, key: Path) -> Launch:
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in backends)
    config = (
        nginx_preamble(workdir, "nginx-tls")
        + "http {"
        + nginx_http_preamble(workdir)
        + "  upstream backends {\n"
        + servers
        + "    keepalive 32;\n  }\n"
        + f"  server {{\n    listen 127.0.0.1:{port} ssl;\n"
        + f"    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
        + "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        + "    location / {\n"
        + "      proxy_pass http://backends;\n"
        + "      proxy_http_version 1.1;\n"
        + '      proxy_set_header Connection "";\n'
        + "    }\n  }\n}\n"
    )
    path = workdir / "nginx-tls.conf"
    path.write_text(config)
    return Launch(
        nginx_argv(workdir, path, "nginx-tls"), port, log_path=workdir / "nginx-tls-error.log"
    )


def kubeferry_tls(
    workdir: Path,
    port: int,
    backends: list[int],
    cert: Path,
    key: Path,
    *,
    executable: Path,
    plain_port: int,
) -> Launch:
    argv = [str(executable), "proxy"]
    for p in backends:
        argv += ["--backend", f"http://127.0.0.1:{p}"]
    argv += ["--host", "127.0.0.1", "--port", str(plain_port), "--admin-port", "0"]
    argv += ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-port", str(port)]
    env = {**os.environ, "KUBEFERRY_LOG__ACCESS_LOG": "false"}
    return Launch(
        argv,
        port,
        env=env,
        stdout_path=workdir / "kubeferry-tls.jsonl",
        log_path=workdir / "kubeferry-tls.stderr",
    )


def wait_https_ok(port: int, process: subprocess.Popen[bytes], log: Path | None) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the bench CA is not worth trusting for a probe
    url = f"https://127.0.0.1:{port}/"
    deadline = time.monotonic() + 15.0
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise BenchError(f"{url}: process exited with {process.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1.0, context=context) as response:
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except OSError as error:
            last = str(error)
        time.sleep(0.1)
    raise BenchError(f"{url} not ready after 15 s ({last})")


def measure_handshakes(
    processes: ProcessGroup,
    contender: _Contender,
    *,
    seconds: int,
    cpus: frozenset[int] | None,
) -> HandshakeRun:
    """`HANDSHAKE_CLIENTS` parallel `openssl s_time -new` clients for `seconds`: each
    connection a full handshake. Wall time is measured here (s_time rounds its own to whole
    seconds)."""
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{contender.port}", "-new"]
    argv += ["-time", str(seconds)]
    cpu_before = group_cpu_seconds(contender.process)
    started = time.monotonic()
    clients = [
        processes.start(f"s_time {n}", argv, stdout=subprocess.PIPE, cpus=cpus)
        for n in range(HANDSHAKE_CLIENTS)
    ]
    total = 0
    for client in clients:
        try:
            out, _ = client.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            processes.stop(client)
            raise BenchError("openssl s_time did not finish") from None
        found = _S_TIME.search(out.decode(errors="replace"))
        if client.returncode != 0 or found is None:
            raise BenchError(f"openssl s_time failed ({client.returncode}):\n{out.decode()}")
        total += int(found[1])
    wall = time.monotonic() - started
    cpu = group_cpu_seconds(contender.process) - cpu_before
    return HandshakeRun(total, wall, cpu)


def run(options: Options) -> Section:
    workdir = Path(tempfile.mkdtemp(prefix="kubeferry-bench-tls-"))
    failed: dict[str, str] = {}
    started: list[_Contender] = []
    try:
        with ProcessGroup() as processes, contextlib.ExitStack() as files:
            cpus = CpuPlan.split(pin=options.pin_cpus)
            backends, _ = start_backends(processes, workdir, cpus=cpus.load)
            cert, key = write_certificate(workdir)
            plain_port = free_port()
            launches = {
                NGINX: nginx_tls(workdir, free_port(), backends, cert, key),
                KUBEFERRY: kubeferry_tls(
                    workdir,
                    free_port(),
                    backends,
                    cert,
                    key,
                    executable=options.kubeferry,
                    plain_port=plain_port,
                ),
            }
            for name, launch in launches.items():
                stdout = (
                    files.enter_context(launch.stdout_path.open("wb"))
                    if launch.stdout_path
                    else None
                )
                stderr = (
                    files.enter_context(launch.log_path.open("wb")) if launch.log_path else None
                )
                process = processes.start(
                    name,
                    launch.argv,
                    env=launch.env,
                    stdout=stdout or subprocess.DEVNULL,
                    stderr=stderr,
                    cpus=cpus.balancer,
                )
                try:
                    wait_https_ok(launch.port, process, launch.log_path)
                except BenchError as error:
                    processes.stop(process)
                    failed[name] = f"{name} failed to start:\n```\n{error}\n```"
                    continue
                started.append(
                    _Contender(
                        name,
                        launch.port,
                        process,
                        plain_port=plain_port if name == KUBEFERRY else None,
                    )
                )
            for round_number in range(options.rounds):
                for contender in list(started):
                    print(f"tls round {round_number + 1}/{options.rounds}: {contender.name} ...")
                    try:
                        _measure(processes, options, contender, round_number, cpus.load)
                    except BenchError as error:
                        failed[contender.name] = f"{contender.name} failed:\n```\n{error}\n```"
                        started.remove(contender)
            for contender in started:
                processes.stop(contender.process)
    finally:
        if options.keep_temp:
            print(f"kept configs and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return summarize(options, started, failed, cpus)


def _measure(
    processes: ProcessGroup,
    options: Options,
    contender: _Contender,
    round_number: int,
    cpus: frozenset[int] | None,
) -> None:
    url = f"https://127.0.0.1:{contender.port}/"
    if round_number == 0 and options.warmup_seconds:
        run_wrk(
            processes,
            url,
            duration_seconds=options.warmup_seconds,
            connections=options.connections,
            threads=options.threads,
            cpus=cpus,
        )
    contender.keepalive.append(_keepalive(processes, options, contender, url, cpus))
    if contender.plain_port is not None:
        plain = f"http://127.0.0.1:{contender.plain_port}/"
        contender.plain.append(_keepalive(processes, options, contender, plain, cpus))
    contender.handshakes.append(
        measure_handshakes(processes, contender, seconds=options.duration_seconds, cpus=cpus)
    )


def _keepalive(
    processes: ProcessGroup,
    options: Options,
    contender: _Contender,
    url: str,
    cpus: frozenset[int] | None,
) -> WrkResult:
    cpu_before = group_cpu_seconds(contender.process)
    result = run_wrk(
        processes,
        url,
        duration_seconds=options.duration_seconds,
        connections=options.connections,
        threads=options.threads,
        cpus=cpus,
    )
    cpu = group_cpu_seconds(contender.process) - cpu_before
    return dataclasses.replace(result, server_cpu_seconds=cpu)


def summarize(
    options: Options,
    started: list[_Contender],
    failed: dict[str, str],
    cpus: CpuPlan,
) -> Section:
    by_name = {c.name: c for c in started}
    rows: list[Row] = []
    handshake_rows: list[tuple[str, HandshakeRun | None]] = []
    notes: list[str] = []
    for name in (NGINX, KUBEFERRY):
        contender = by_name.get(name)
        if contender is None or not contender.keepalive:
            rows.append(Row(name, problem="failed, details below"))
            handshake_rows.append((name, None))
            notes.append(failed.get(name, f"{name}: no runs"))
            continue
        rows.append(Row(name, median_run(contender.keepalive), rounds=_rounds(contender.keepalive)))
        if contender.plain:
            rows.append(
                Row(KUBEFERRY_PLAIN, median_run(contender.plain), rounds=_rounds(contender.plain))
            )
        handshakes = sorted(contender.handshakes, key=lambda r: r.per_second)
        handshake_rows.append((name, handshakes[(len(handshakes) - 1) // 2]))
        if options.rounds > 1:
            notes.append(
                f"{name}: keep-alive requests/s per round "
                + ", ".join(f"{r.requests_per_second:,.0f}" for r in contender.keepalive)
                + "; handshakes/s per round "
                + ", ".join(f"{r.per_second:,.0f}" for r in contender.handshakes)
                + "."
            )
    failures = [
        f"{row.name}: {row.result.errors} of {row.result.requests} requests failed"
        for row in rows
        if row.result and row.result.errors > MAX_ERROR_SHARE * max(row.result.requests, 1)
    ]
    baseline_row = rows[0].result
    baseline = baseline_row.requests_per_second if baseline_row else None
    nginx_handshakes = handshake_rows[0][1]
    handshake_table = _handshake_table(handshake_rows, nginx_handshakes)
    notes.append(f"CPU placement: {cpus.describe()}.")
    notes.append(
        f"Machine load average (1 min) at the end: {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} CPUs; other work on the machine lowers every row."
    )
    print()
    print(text_table(rows, baseline))
    print()
    print(handshake_table)
    for note in notes:
        print(note)
    setup = (
        f"Keep-alive: `wrk -t{options.threads} -c{options.connections} "
        f"-d{options.duration_seconds}s --latency https://127.0.0.1:PORT/`. Handshakes: "
        f"{HANDSHAKE_CLIENTS} parallel `openssl s_time -new -time {options.duration_seconds}` "
        "(a full handshake per connection, no HTTP request). Same P-256 certificate for both, "
        "TLS 1.3 negotiated; the plain-HTTP row is kubeferry's own HTTP port in the same "
        "process, for what TLS adds. Median of "
        f"{options.rounds} interleaved round(s); one worker each; kubeferry's access log off."
    )
    markdown = (
        "## TLS: kubeferry vs nginx, same certificate\n\n"
        + setup
        + "\n\n"
        + markdown_table(rows, baseline)
        + "\n\n"
        + handshake_table
        + "\n"
        + "".join(f"\n{note}\n" for note in notes)
    )
    return Section("tls", markdown, tuple(failures))


def _rounds(runs: list[WrkResult]) -> tuple[float, ...]:
    """The rounds' requests/s for the spread column; none for a single run."""
    return tuple(r.requests_per_second for r in runs) if len(runs) > 1 else ()


def _handshake_table(
    rows: list[tuple[str, HandshakeRun | None]], nginx: HandshakeRun | None
) -> str:
    # CPU per handshake is the steadier figure on a busy machine: handshakes/s also depends
    # on how fast the clients, on the other CPU, can go.
    lines = [
        "| terminator | full handshakes/s | vs nginx | CPU/handshake | nginx's CPU/handshake"
        " over this |",
        "|---|---|---|---|---|",
    ]
    nginx_cpu = nginx.cpu_per_handshake_seconds if nginx else None
    for name, run in rows:
        if run is None:
            lines.append(f"| {name} | - | not run | - | - |")
            continue
        cpu = run.cpu_per_handshake_seconds
        ratio = f"{run.per_second / nginx.per_second:.2f}x" if nginx else "-"
        cpu_ratio = f"{nginx_cpu / cpu:.2f}x" if nginx_cpu and cpu else "-"
        cpu_text = format_seconds(cpu) if cpu else "-"
        lines.append(f"| {name} | {run.per_second:,.0f} | {ratio} | {cpu_text} | {cpu_ratio} |")
    return "\n".join(lines)
