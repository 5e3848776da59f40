"""Pod networking without a kubelet: one bridge per test session, one network namespace per pod.

The host is the "node": a bridge ``kf<sid>br`` holds the session's first address of a /22 taken
from 10.244.0.0/16, and every stand-in pod is a namespace ``kf-<sid>-p<n>`` joined to the bridge
by a veth pair (host side ``kf<sid>p<n>``, pod side ``eth0``). Pod addresses are real, routable
from the test process, and never loopback -- EndpointSlice validation rejects loopback.

Blocking by design (``ip`` calls take milliseconds); async callers go through ``asyncio.to_thread``.

Ownership: each session records ``<pid> <start time>`` in /run/kubeferry/netns/<sid>; a session
whose owner is gone (pytest killed) is cleaned up by the next session, so parallel runs never
touch each other's namespaces and a killed run leaves nothing behind for long. /run is a tmpfs,
like the namespaces and links themselves, so the records vanish together with what they describe.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

POD_CIDR = ipaddress.IPv4Network("10.244.0.0/16")
SESSION_PREFIX = 22  # 1021 pod addresses per session; 64 sessions fit in POD_CIDR
OWNER_DIR = Path("/run/kubeferry/netns")
_NETNS_RE = re.compile(r"^kf-([0-9a-f]{6})-p\d+$")
_LINK_RE = re.compile(r"^kf([0-9a-f]{6})(?:br|p\d+)$")


class NetworkError(RuntimeError):
    """An ``ip`` command failed; the message has the command and its stderr."""


def ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True, slots=True)
class PodLink:
    """One pod's network: its namespace, the host end of its veth pair, and its address."""

    netns: str
    host_if: str
    address: ipaddress.IPv4Address

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run in the pod's namespace; ``ip netns exec`` execs, so the pid is argv's."""
        return ["ip", "netns", "exec", self.netns, *argv]


class PodNetwork:
    """The session's bridge and the pods attached to it."""

    def __init__(self, sid: str, subnet: ipaddress.IPv4Network) -> None:
        self.sid = sid
        self.subnet = subnet
        self.bridge = f"kf{sid}br"
        hosts = subnet.hosts()
        self.gateway = next(hosts)
        # Mutable state: the address iterator (never reused within a session, so no stale ARP
        # entry can point at a dead pod's MAC) and the live links by namespace name.
        self._free = hosts
        self._next_index = 0
        self._links: dict[str, PodLink] = {}

    def __repr__(self) -> str:
        return f"<PodNetwork {self.bridge} {self.subnet}: {len(self._links)} pods>"

    @classmethod
    def create(cls) -> PodNetwork:
        """Cleans up dead sessions, then makes a bridge on a /22 no route on this host uses."""
        cleanup_stale_sessions()
        sid = secrets.token_hex(3)
        subnet = _unused_subnet()
        OWNER_DIR.mkdir(parents=True, exist_ok=True)
        (OWNER_DIR / sid).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        network = cls(sid, subnet)
        try:
            ip("link", "add", network.bridge, "type", "bridge")
            ip("addr", "add", f"{network.gateway}/{subnet.prefixlen}", "dev", network.bridge)
            ip("link", "set", network.bridge, "up")
        except BaseException:
            network.close()
            raise
        return network

    def add_pod(self) -> PodLink:
        try:
            address = next(self._free)
        except StopIteration:
            raise NetworkError(f"{self!r}: no pod addresses left in {self.subnet}") from None
        self._next_index += 1
        link = PodLink(
            netns=f"kf-{self.sid}-p{self._next_index}",
            host_if=f"kf{self.sid}p{self._next_index}",
            address=address,
        )
        self._links[link.netns] = link
        try:
            ip("netns", "add", link.netns)
            # Create the pod end directly inside the namespace, already named eth0.
            veth = ("type", "veth", "peer", "name", "eth0", "netns", link.netns)
            ip("link", "add", link.host_if, *veth)
            ip("link", "set", link.host_if, "master", self.bridge, "up")
            ip("-n", link.netns, "link", "set", "lo", "up")
            ip("-n", link.netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", link.netns, "link", "set", "eth0", "up")
            ip("-n", link.netns, "route", "add", "default", "via", str(self.gateway))
        except BaseException:
            self.remove_pod(link)
            raise
        return link

    def remove_pod(self, link: PodLink) -> None:
        """Kills whatever still runs in the pod's namespace, then deletes namespace and veth."""
        self._links.pop(link.netns, None)
        _delete_netns(link.netns)
        ip("link", "del", link.host_if, check=False)  # usually gone with its peer already

    def cut(self, link: PodLink) -> None:
        """Takes the host end down: the pod is up but unreachable, as in a network partition."""
        ip("link", "set", link.host_if, "down")

    def restore(self, link: PodLink) -> None:
        ip("link", "set", link.host_if, "up")

    def close(self) -> None:
        for link in list(self._links.values()):
            self.remove_pod(link)
        ip("link", "del", self.bridge, check=False)
        (OWNER_DIR / self.sid).unlink(missing_ok=True)


def cleanup_stale_sessions() -> list[str]:
    """Removes namespaces and links of sessions whose owning process is gone; returns their ids."""
    live = {sid for sid in _recorded_sessions() if _owner_alive(sid)}
    stale: set[str] = set()
    for name in _netns_names():
        match = _NETNS_RE.match(name)
        if match and match.group(1) not in live:
            stale.add(match.group(1))
            _delete_netns(name)
    for name in _link_names():
        match = _LINK_RE.match(name)
        if match and match.group(1) not in live:
            stale.add(match.group(1))
            ip("link", "del", name, check=False)
    for sid in _recorded_sessions() - live:
        stale.add(sid)
        (OWNER_DIR / sid).unlink(missing_ok=True)
    return sorted(stale)


def _delete_netns(name: str) -> None:
    # A namespace outlives `ip netns del` while processes still run in it: kill them first.
    for pid in ip("netns", "pids", name, check=False).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "del", name, check=False)


def _netns_names() -> list[str]:
    # Lines look like "kf-1a2b3c-p1 (id: 3)" or just "kf-1a2b3c-p1".
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _link_names() -> list[str]:
    names = []
    for line in ip("-o", "link", "show").splitlines():
        # "7: kf1a2b3cp1@if2: <BROADCAST,...": the name ends at '@' or ':'.
        names.append(line.split(":", 2)[1].strip().split("@")[0])
    return names


def _recorded_sessions() -> set[str]:
    if not OWNER_DIR.is_dir():
        return set()
    return {p.name for p in OWNER_DIR.iterdir() if re.fullmatch(r"[0-9a-f]{6}", p.name)}


def _start_time(pid: int) -> str:
    # Field 22 of /proc/<pid>/stat; with the pid it identifies a process across pid reuse.
    # The command name (field 2) may contain spaces, so split after its closing parenthesis.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(sid: str) -> bool:
    try:
        pid_text, started = (OWNER_DIR / sid).read_text().split()
        return _start_time(int(pid_text)) == started
    except (OSError, ValueError):
        return False


def _unused_subnet() -> ipaddress.IPv4Network:
    """A random /22 of POD_CIDR that overlaps no route on this host (so no other session's)."""
    taken = []
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("local", "broadcast", "unreachable", "prohibit", "blackhole"):
            first = line.split()[1]
        try:
            taken.append(ipaddress.IPv4Network(first, strict=False))
        except ValueError:
            continue  # "default" and friends
    candidates = list(POD_CIDR.subnets(new_prefix=SESSION_PREFIX))[1:]  # keep .0.x for humans
    # Random order: two sessions starting at once rarely race for the same subnet.
    secrets.SystemRandom().shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise NetworkError(f"no free /{SESSION_PREFIX} left in {POD_CIDR} on this host")
