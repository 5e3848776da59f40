"""A stand-in pod's workload: a tiny HTTP server that says who it is.

Run as ``python -m tests.kube.backend --port 8080 --name pod-a`` (the stand-in pod helper runs it
inside the pod's network namespace). Standard library only, so it starts in a few tens of
milliseconds and a test never waits on imports.

- ``GET /healthz`` answers 200 ``ok``: a target for readiness and active health checks.
- Any other ``GET`` answers 200 with the pod name as the body, and ``X-Pod-Name`` as a header, so a
  test behind a load balancer can tell which backend served it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


def make_handler(pod_name: str) -> type[BaseHTTPRequestHandler]:
    body = pod_name.encode()

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps connections alive, as a real workload would; the proxy's connection
        # reuse is part of what the tests exercise.
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            payload = b"ok" if self.path == "/healthz" else body
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Pod-Name", pod_name)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            # One line per request on stderr is noise the tests never read; keep it quiet.
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0", help="inside a pod netns, all = the pod IP")
    parser.add_argument("--name", required=True, help="the pod name to answer with")
    args = parser.parse_args(argv)

    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.name))
    server.daemon_threads = True

    def stop(signum: int, frame: FrameType | None) -> None:
        # SIGTERM is how the helper ends a backend politely; exit without a traceback.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
