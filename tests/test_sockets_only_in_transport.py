"""turncheck/transport.py is the only module with sockets (turncheck/__init__.py, STYLE.md).

An AST scan of every other module under turncheck/ for the calls that open a socket or a
connection or put TLS on one, and for the imports of libraries that open their own. The few
modules that did so before the rule was checked are named below, each with its reason; an
entry that no longer matches anything fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "turncheck"
TRANSPORT = "turncheck/transport.py"

# Calls that open a socket or a connection, or put TLS on one, by their last name whatever
# the receiver: socket., asyncio., an event loop, a StreamWriter, an SSLContext.
OPENERS = frozenset(
    {
        # socket
        "socket",
        "socketpair",
        "fromfd",
        "create_connection",
        "create_server",
        # asyncio: streams, then the loop's own
        "open_connection",
        "open_unix_connection",
        "start_server",
        "start_unix_server",
        "create_datagram_endpoint",
        "create_unix_connection",
        "create_unix_server",
        "connect_accepted_socket",
        "sock_connect",
        "sock_accept",
        "start_tls",
        # ssl (wrap_bio is not here: a MemoryBIO is no socket, see audit/tls.can_offer)
        "wrap_socket",
        "get_server_certificate",
    }
)
# Modules (and their submodules) whose imports open sockets of their own.
NETWORK_LIBRARIES = (
    "aiohttp",
    "httpx",
    "requests",
    "urllib3",
    "urllib.request",
    "http.client",
    "socketserver",
    "websockets",
    "dns.asyncresolver",
    "dns.resolver",
    "dns.query",
    "aioice.ice",
    "aioice.turn",
    "stun",  # pystun3 (turncheck's own codec is turncheck.stun, aioice's is aioice.stun)
)
# Where names imported from these modules are followed through their aliases.
_ALIASED = ("socket", "asyncio", "ssl")

# (path, or a package's path ending in "/"; the opener or library) → why it is there.
EXCEPTIONS = {
    ("turncheck/serve/", "aiohttp"): "the exporter and the test pages are an HTTP server: "
    "an edge, on aiohttp, not a STUN/TURN path",
    ("turncheck/icefetch.py", "aiohttp"): "iceServers from an app's credential endpoint: an "
    "HTTPS client (wire layer), not a STUN/TURN path",
    ("turncheck/resolve.py", "dns.asyncresolver"): "DNS (wire layer): dnspython's own sockets",
    ("turncheck/resolve.py", "dns.resolver"): "DNS (wire layer): dnspython's exceptions and "
    "its Resolver",
    ("turncheck/nat.py", "stun"): "pystun3's second opinion on the NAT: it blocks on the "
    "socket it is handed (STYLE.md, Traps)",
    ("turncheck/nat.py", "socket"): "the fresh socket for pystun3, in its worker thread; to "
    "move into transport.py with nat.classic_check",
}


def socket_uses(source: str) -> list[tuple[int, str]]:
    """(line, opener or library) of every socket opened or network library imported."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            if node.module in _ALIASED:
                aliases.update({a.asname or a.name: a.name for a in node.names})
        for name in names:
            for library in NETWORK_LIBRARIES:
                if name == library or name.startswith(f"{library}."):
                    found.append((node.lineno, library))
                    break
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute):
            called = node.func.attr
        elif isinstance(node.func, ast.Name):
            called = aliases.get(node.func.id, "")  # a bare name only when imported so
        else:
            continue
        if called in OPENERS:
            found.append((node.lineno, called))
    return sorted(set(found))


def _excepted(path: str, what: str) -> tuple[str, str] | None:
    for where, name in EXCEPTIONS:
        if name == what and (path == where or (where.endswith("/") and path.startswith(where))):
            return where, name
    return None


def outside_transport(root: Path) -> tuple[list[str], set[tuple[str, str]]]:
    """The socket uses under root/turncheck other than transport.py's, as "path:line: what",
    and the exceptions they fell under."""
    broken: list[str] = []
    used: set[tuple[str, str]] = set()
    for module in sorted((root / "turncheck").rglob("*.py")):
        path = module.relative_to(root).as_posix()
        if path == TRANSPORT or "__pycache__" in module.parts:
            continue
        for line, what in socket_uses(module.read_text()):
            allowed = _excepted(path, what)
            if allowed is None:
                broken.append(f"{path}:{line}: {what}")
            else:
                used.add(allowed)
    return broken, used


def test_only_transport_opens_sockets() -> None:
    broken, used = outside_transport(ROOT)
    assert not broken, (
        "sockets outside turncheck/transport.py (move the primitive there and call it):\n"
        + "\n".join(broken)
    )
    stale = sorted(set(EXCEPTIONS) - used)
    assert not stale, f"exceptions that match nothing any more: remove them: {stale}"


def test_a_socket_planted_in_an_audit_check_breaks_the_rule(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "turncheck", ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "turncheck" / "audit" / "unauth.py").open("a") as f:
        f.write(
            "\n\nasync def _planted(loop):\n"
            "    await loop.create_datagram_endpoint(object, remote_addr=('192.0.2.1', 3478))\n"
        )
    broken, _ = outside_transport(tmp_path)
    assert len(broken) == 1 and broken[0].startswith("turncheck/audit/unauth.py:"), broken
    assert broken[0].endswith(": create_datagram_endpoint")


def test_the_scan_sees_transports_own_sockets() -> None:
    """The scanner reads real code: transport.py's openers are all seen."""
    seen = {what for _, what in socket_uses((ROOT / TRANSPORT).read_text())}
    assert {"socket", "create_datagram_endpoint", "open_connection", "start_tls"} <= seen


PLANTS = {
    "socket.socket": "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n",
    "socket imported by name, aliased": "from socket import socket as raw\nraw()\n",
    "socket.create_connection": "import socket\nsocket.create_connection(('192.0.2.1', 80))\n",
    "a loop's datagram endpoint": (
        "async def f(loop):\n"
        "    await loop.create_datagram_endpoint(object, remote_addr=('192.0.2.1', 3478))\n"
    ),
    "asyncio.open_connection": (
        "import asyncio\n\nasync def f():\n    await asyncio.open_connection('192.0.2.1', 3478)\n"
    ),
    "open_connection imported by name": (
        "from asyncio import open_connection as connect\n\n"
        "async def f():\n    await connect('192.0.2.1', 3478)\n"
    ),
    "the running loop's create_connection": (
        "import asyncio\n\nasync def f():\n"
        "    await asyncio.get_running_loop().create_connection(object, '192.0.2.1', 3478)\n"
    ),
    "StreamWriter.start_tls": "async def f(writer, context):\n    await writer.start_tls(context)\n",
    "SSLContext.wrap_socket": "def f(context, sock):\n    return context.wrap_socket(sock)\n",
    "ssl.get_server_certificate": "import ssl\nssl.get_server_certificate(('192.0.2.1', 443))\n",
    "an HTTP client": "import aiohttp\n",
    "aioice's TURN client": "from aioice import turn\n",
    "aioice's TURN client by its function": ("from aioice.turn import create_turn_endpoint\n"),
    "a function-local import": "def f():\n    import httpx\n",
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_planted_socket_is_found(plant: str) -> None:
    assert socket_uses(PLANTS[plant]), plant


def test_what_opens_no_socket_is_not_found() -> None:
    harmless = (
        "import socket\nimport ssl\n"
        "from turncheck import stun\nfrom aioice import stun as codec\nimport dns.exception\n"
        "family = socket.AF_INET6\n"
        "context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
        "tls = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())\n"
        "async def f(loop):\n    await loop.getaddrinfo('example.org', None)\n"
    )
    assert socket_uses(harmless) == []
