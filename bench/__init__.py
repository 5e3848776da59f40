"""The benchmark harness: `make bench` (or `.venv/bin/python -m bench`).

Sections, chosen with `--only`:
  proxy       kubeferry against nginx and HAProxy as load balancers over the same three
              backends, driven by wrk (bench/loadbalancers.py)
  controller  written separately in bench/controller.py; it must define
              `run(options: bench.options.Options) -> bench.report.Section`

Every process a section starts belongs to a `bench.processes.ProcessGroup`, which stops them all
on the way out, including after Ctrl-C, SIGTERM or an error. Traffic goes to 127.0.0.1 only.
"""
