"""Test helpers around :mod:`tests.browser.driver`: run a real headless Chromium in
a lab namespace, and give that namespace its own resolver and hosts file.

::

    out = run_chromium(lab, [gather("stun", {"iceServers": [{"urls": "stun:203.0.113.2"}]})])
    out["results"]["stun"]["candidates"]  # what Chromium's icecandidate events carried

Chromium is Debian's (/usr/bin/chromium, or $TURNCHECK_CHROMIUM), driven by the
``playwright`` pip package's node driver; no browser is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.browser.driver import CHROMIUM_ENV, DEFAULT_CHROMIUM
from tests.servers.fixtures import lab_unavailable

if TYPE_CHECKING:  # pragma: no cover
    from tests.lab.netns import Lab

__all__ = [
    "ChromiumError",
    "chromium_path",
    "construct",
    "gather",
    "netns_etc",
    "open_test_page",
    "relay_protocol",
    "require_chromium",
    "require_firefox",
    "run_chromium",
    "run_firefox",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
NETNS_ETC = Path("/etc/netns")
# Driver start-up (Python, Playwright's node driver, Chromium) measured at about
# 1-2 s here; the rest of the default timeout is slack for a loaded 2-core machine.
START_SLACK_S = 40.0
# A page run: browser start (1-3 s) and the end screenshots come out of open_test_page's
# timeout, the rest bounds the wait for the page's "done".
PAGE_START_SLACK_S = 15.0
_NS_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ChromiumError(RuntimeError):
    """The driver failed (no OUT.json, a fatal error, a timeout, missing results)."""


def chromium_path() -> str:
    return os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM


def require_chromium(*, ca: bool = False) -> str:
    """The Chromium executable; skip (fail under TURNCHECK_REQUIRE_LAB=1) when it,
    the ``playwright`` package, or (with *ca*) ``certutil`` is missing."""
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        lab_unavailable(f"Chromium not found at {path} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        lab_unavailable("python package 'playwright' is not installed (pip install -e '.[test]')")
    if ca and shutil.which("certutil") is None:
        lab_unavailable("'certutil' not found on PATH (apt-get install libnss3-tools)")
    return path


def gather(job_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A "gather" job: candidates and candidate errors for *config*."""
    return {"id": job_id, "kind": "gather", "config": dict(config)}


def construct(job_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A "construct" job: does ``new RTCPeerConnection(config)`` throw?"""
    return {"id": job_id, "kind": "construct", "config": dict(config)}


def run_chromium(
    lab: Lab,
    jobs: Sequence[Mapping[str, Any]],
    *,
    ca_pem: str | os.PathLike[str] | None = None,
    cap_s: float = 8.0,
    timeout: float | None = None,
    ns: str | None = None,
    extra_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the driver once in *lab*'s client namespace (or *ns*) with *jobs*
    and return its OUT.json (``results`` holds one entry per job id).

    *ca_pem*: a CA certificate Chromium trusts (an NSS db in the driver's fresh
    HOME).  *cap_s*: how long a gather job waits for "complete".  *timeout*:
    the whole run (default cap_s + 40 s); the driver gives up 5 s before it.
    ``out["timing"]["wall_s"]`` is the run as seen from here.  *ns*: another
    namespace of the lab to run in.  *extra_args*: more Chromium switches.

    Raises :class:`ChromiumError` when the driver fails; skips (fails under
    TURNCHECK_REQUIRE_LAB=1) when Chromium, playwright or certutil is missing.
    """
    require_chromium(ca=ca_pem is not None)
    if timeout is None:
        timeout = cap_s + START_SLACK_S
    ids = [str(job["id"]) for job in jobs]
    spec = {
        "ca_pem": str(ca_pem) if ca_pem is not None else None,
        "cap_s": cap_s,
        "timeout_s": max(1.0, timeout - 5.0),
        "jobs": [dict(job) for job in jobs],
        "args": list(extra_args),
    }
    started = time.monotonic()
    out, stderr = _run_driver(lab, "tests.browser.driver", "Chromium", spec, timeout, ns)
    wall = time.monotonic() - started
    missing = [i for i in ids if i not in out.get("results", {})]
    if missing:
        raise ChromiumError(f"no results for job(s) {missing}; stderr:\n{stderr}")
    out.setdefault("timing", {})["wall_s"] = wall
    return out


def relay_protocol(candidate: Mapping[str, Any]) -> str | None:
    """The relay protocol of a relay candidate: its ``relayProtocol`` or, when
    Chromium leaves that null, what its ``url`` says (``turns:`` → tls,
    ``?transport=tcp`` → tcp, else udp).

    Chromium 156 derives relayProtocol from the top byte of the priority
    (Blink's PriorityToRelayProtocol: 0 tls, 1 tcp, 2 udp), but gives UDP
    relays a type preference of 3 (priority 0x037F1FFF), so a UDP relay's
    relayProtocol is null.  None for non-relay candidates."""
    if candidate.get("type") != "relay":
        return None
    if candidate.get("relayProtocol"):
        return str(candidate["relayProtocol"])
    url = str(candidate.get("url") or "")
    if url.startswith("turns:"):
        return "tls"
    return "tcp" if "transport=tcp" in url else "udp"


def _check_ns_name(ns: str) -> None:
    if not _NS_NAME.match(ns) or ns in (".", ".."):
        raise ValueError(f"not a namespace name: {ns!r}")


@contextmanager
def netns_etc(
    ns: str, resolv_nameserver: str | None, hosts: Mapping[str, str] | None = None
) -> Iterator[Path]:
    """Give namespace *ns* its own /etc/resolv.conf and /etc/hosts.

    ``ip netns exec <ns>`` bind-mounts every file of /etc/netns/<ns>/ over the
    same name in /etc for the program it runs (Chromium, turncheck, ...).  The
    resolv.conf names *resolv_nameserver* only (None: no nameserver line, so a
    lookup goes to the namespace's own 127.0.0.1:53, where nothing listens:
    no query ever leaves the lab); the hosts file has localhost plus *hosts*
    (name → address).  The directory is removed afterwards, always.

    Takes effect for processes started after entry (``ip netns exec`` sets the
    mounts up at start)."""
    _check_ns_name(ns)
    directory = NETNS_ETC / ns
    if directory.exists():
        raise FileExistsError(f"{directory} already exists (another lab's? left over?)")
    resolv = ["# written by tests/browser/chromium.py netns_etc"]
    if resolv_nameserver is not None:
        resolv.append(f"nameserver {resolv_nameserver}")
    # one quick try: a lab resolver answers at once, a missing one must not stall
    resolv.append("options timeout:1 attempts:1")
    host_lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for name, address in (hosts or {}).items():
        if not name or any(c.isspace() for c in name) or any(c.isspace() for c in address):
            raise ValueError(f"bad hosts entry {name!r} → {address!r}")
        host_lines.append(f"{address}\t{name}")
    made_parent = not NETNS_ETC.exists()
    try:
        directory.mkdir(parents=True)
        (directory / "resolv.conf").write_text("\n".join(resolv) + "\n")
        (directory / "hosts").write_text("\n".join(host_lines) + "\n")
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if made_parent:
            try:
                NETNS_ETC.rmdir()  # only if we made it and it is empty again
            except OSError:
                pass


def require_firefox(*, ca: bool = False) -> str:
    """The Firefox executable; skip (fail under TURNCHECK_REQUIRE_LAB=1) when it, the
    ``websockets`` package, or (with *ca*) ``certutil`` is missing."""
    from tests.browser.firefox_driver import FIREFOX

    if not (os.path.isfile(FIREFOX) and os.access(FIREFOX, os.X_OK)):
        lab_unavailable(f"Firefox not found at {FIREFOX} (apt-get install firefox-esr)")
    if ca and shutil.which("certutil") is None:
        lab_unavailable("'certutil' not found on PATH (apt-get install libnss3-tools)")
    if importlib.util.find_spec("websockets") is None:
        lab_unavailable("python package 'websockets' is not installed (pip install -e '.[test]')")
    return FIREFOX


def open_test_page(
    lab: Lab,
    url: str,
    *,
    browser: str = "chromium",
    ca_pem: str | os.PathLike[str] | None = None,
    screenshots_dir: str | os.PathLike[str] | None = None,
    widths: Sequence[int] = (390, 1280),
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Open turncheck serve's test page at *url* once in *browser* ("chromium" or
    "firefox"), in *lab*'s client namespace, and watch it run to its end.

    Returns ``{"state": window.turncheckState, "browser_version", "screenshots": {name:
    path}, "timing": {..., "run_s": navigation to "done", "wall_s"}, "console": [...]}``.
    With *screenshots_dir*, full-page PNGs named ``<browser>-<mid|end>-<phone|desktop>.png``
    (mid: the first time the page runs past progress 0.3; end: done or error) at every
    width of *widths* (the first one is the width the page opens at).  *timeout* bounds
    the whole driver run.  Raises :class:`ChromiumError` when the driver fails; skips
    (fails under TURNCHECK_REQUIRE_LAB=1) when the browser or its driver is missing."""
    if browser == "chromium":
        require_chromium(ca=ca_pem is not None)
        module, name = "tests.browser.driver", "Chromium"
    elif browser == "firefox":
        require_firefox(ca=ca_pem is not None)
        module, name = "tests.browser.firefox_driver", "Firefox"
    else:
        raise ValueError(f"browser must be 'chromium' or 'firefox', not {browser!r}")
    spec = {
        "mode": "page",
        "url": url,
        "ca_pem": str(ca_pem) if ca_pem is not None else None,
        "widths": [int(w) for w in widths],
        "screenshots_dir": str(screenshots_dir) if screenshots_dir is not None else None,
        "screenshot_prefix": browser,
        "wait_s": max(1.0, timeout - PAGE_START_SLACK_S),
        "timeout_s": max(1.0, timeout - 5.0),
    }
    started = time.monotonic()
    out, _ = _run_driver(lab, module, name, spec, timeout, None)
    out.setdefault("timing", {})["wall_s"] = time.monotonic() - started
    return out


def run_firefox(
    lab: Lab,
    jobs: Sequence[Mapping[str, Any]],
    *,
    ca_pem: str | os.PathLike[str] | None = None,
    cap_s: float = 8.0,
    timeout: float | None = None,
) -> dict[str, Any]:
    """tests/browser/firefox_driver.py once in *lab*'s client namespace with *jobs* (gather
    and construct jobs, as for Chromium); its OUT.json. Raises ChromiumError when it fails;
    skips (fails under TURNCHECK_REQUIRE_LAB=1) when firefox-esr or certutil is missing."""
    require_firefox(ca=ca_pem is not None)
    if timeout is None:
        timeout = cap_s + START_SLACK_S
    spec = {
        "ca_pem": str(ca_pem) if ca_pem is not None else None,
        "cap_s": cap_s,
        "timeout_s": max(1.0, timeout - 5.0),
        "jobs": [dict(job) for job in jobs],
    }
    out, _ = _run_driver(lab, "tests.browser.firefox_driver", "Firefox", spec, timeout, None)
    return dict(out)


def _run_driver(
    lab: Lab,
    module: str,
    name: str,
    spec: Mapping[str, Any],
    timeout: float,
    ns: str | None,
) -> tuple[dict[str, Any], str]:
    """One browser driver run in a lab namespace: IN.json in, OUT.json and stderr out;
    ChromiumError when it did not finish, wrote nothing, or failed."""
    with tempfile.TemporaryDirectory(prefix="turncheck-browser-run-") as tmp:
        in_path, out_path = Path(tmp) / "in.json", Path(tmp) / "out.json"
        in_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        argv = [sys.executable, "-m", module, str(in_path), str(out_path)]
        try:
            done = lab.run(ns or lab.client_ns, argv, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise ChromiumError(f"the {name} driver did not finish in {timeout:.0f} s") from exc
        stderr = (done.stderr or "")[-4000:]
        try:
            out = json.loads(out_path.read_text())
        except (OSError, ValueError) as exc:
            raise ChromiumError(
                f"the {name} driver exited with code {done.returncode} and no OUT.json "
                f"({exc}); stderr:\n{stderr}"
            ) from exc
    if out.get("fatal") or done.returncode != 0:
        raise ChromiumError(
            f"the {name} driver failed (code {done.returncode}): {out.get('fatal')}; "
            f"{out.get('log') or ''}\nstderr:\n{stderr}"
        )
    return dict(out), stderr
