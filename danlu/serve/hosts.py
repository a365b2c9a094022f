"""Which ``Host`` headers the server answers: the DNS-rebinding guard of a server on this machine.

A web page the user visits can make its own domain resolve to 127.0.0.1 and then read the answers of a
keyless local server as same-origin. Its requests still carry the page's domain in ``Host``, so the server
answers only localhost names, IP addresses it is reachable at, and names the operator allows
(``--allowed-hosts``). An IP address in ``Host`` cannot be a rebinding (that needs a domain name), so a
server bound to every interface (0.0.0.0, ::) answers any IP address; a server bound to one answers that
one and loopback. A request without ``Host`` (HTTP/1.0 tools; browsers always send it) is answered.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


class HostCheck:
    """``allows(raw Host header)``; entries are names, IP addresses, ``.example.com`` (that domain and its
    subdomains) or ``*`` (any host: the check is off)."""

    def __init__(self, bind_host: str = "127.0.0.1", extra: Iterable[str] = ()):
        self.any = False
        self.names = set(LOCAL_NAMES)
        self.suffixes: list[str] = [".localhost"]  # browsers resolve *.localhost to loopback themselves
        self.ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self.any_ip = bind_host in WILDCARDS
        if self.any_ip:
            self.names.add(socket.gethostname().lower())
        else:
            self._add(bind_host)
        for entry in extra:
            self._add(entry)
        # answers by raw header: a client sends the same Host on every request, and parsing it as an IP
        # address took ~2 % of the event loop's time at 32 clients (py-spy); bounded, so junk cannot grow it
        self._seen: dict[bytes, bool] = {}

    def _add(self, entry: str) -> None:
        entry = entry.strip().lower().rstrip(".")
        if entry == "*":
            self.any = True
        elif entry.startswith("."):
            self.suffixes.append(entry)
        elif entry:
            ip = _ip(entry.strip("[]"))
            if ip is not None:
                self.ips.add(ip)
            else:
                self.names.add(entry)

    @property
    def allowed(self) -> list[str]:
        """What a refused client is told it may use."""
        return sorted(self.names) + sorted(map(str, self.ips)) + ["127.0.0.1", "::1"]

    def allows(self, header: bytes | None) -> bool:
        if self.any or header is None:
            return True
        known = self._seen.get(header)
        if known is None:
            known = self._allows(header)
            if len(self._seen) < 256:
                self._seen[header] = known
        return known

    def _allows(self, header: bytes) -> bool:
        host = _strip_port(header.decode("latin-1").strip().lower()).rstrip(".")
        ip = _ip(host)
        if ip is not None:
            return ip.is_loopback or self.any_ip or ip in self.ips
        return host in self.names or any(host.endswith(s) or host == s[1:] for s in self.suffixes)


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1:host.index("]")] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
