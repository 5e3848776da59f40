"""The TLS bench section's reading of `openssl s_time` and its handshake table (canned
output, no processes)."""

from __future__ import annotations

from bench.tls import _S_TIME, HandshakeRun, _handshake_table

S_TIME = """\
Collecting connection statistics for 10 seconds
*************************************************

1711 connections in 0.92s; 1859.78 connections/user sec, bytes read 0
1711 connections in 11 real seconds, 0 bytes read per connection
"""


def test_s_time_count_is_read_from_the_first_summary_line() -> None:
    found = _S_TIME.search(S_TIME)
    assert found is not None
    assert int(found[1]) == 1711


def test_handshake_table_ratios() -> None:
    nginx = HandshakeRun(handshakes=2000, seconds=10.0, server_cpu_seconds=1.0)
    ours = HandshakeRun(handshakes=1000, seconds=10.0, server_cpu_seconds=1.0)
    assert ours.per_second == 100.0
    assert ours.cpu_per_handshake_seconds == 0.001
    table = _handshake_table([("nginx", nginx), ("kubeferry", ours), ("broken", None)], nginx)
    lines = table.splitlines()
    assert lines[2] == "| nginx | 200 | 1.00x | 500 µs | 1.00x |"
    assert lines[3] == "| kubeferry | 100 | 0.50x | 1.00 ms | 0.50x |"
    assert lines[4] == "| broken | - | not run | - | - |"
