"""Every turncheck command in the README and its docs/ pages runs as written.

The examples are read out of the code blocks of README.md and of every docs/*.md page
(the reference, one page per command) and run against the test coturn,
with only what cannot be real here rewritten: example host names become localhost with
the test server's ports, example files are written next to the run, the load figures
shrink, and commands without a URL (which would probe public STUN servers) get the test
server's URL. A README example that no longer parses (exit 2) fails this test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn
from tests.test_relay import udp_echo_peer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_PAGES = ("probe", "nat", "load", "serve", "diagnose", "creds", "support", "audit")
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
DUMP = Path(__file__).resolve().parent / "data" / "dumps" / "older-format-synthetic.json"
RTCSTATS = Path(__file__).resolve().parent / "data" / "rtcstats" / "relay-udp.rtcstats"
SECRET = "readme-shared-secret"


def docs_text() -> str:
    """README.md, then every docs/*.md page (sorted), as one text (each ends its fences)."""
    return "".join(path.read_text(encoding="utf-8") for path in DOCS)


def code_blocks() -> list[str]:
    """The code blocks of README.md, then of every docs/*.md page (sorted)."""
    out: list[str] = []
    for path in DOCS:
        out += re.findall(r"```[a-z]*\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    return out


def readme_commands() -> list[str]:
    """turncheck command lines in the code blocks of the README and docs (continuations joined)."""
    out: list[str] = []
    for block in code_blocks():
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.strip()
            line = re.sub(r"^- ", "", line)
            if "/bin/turncheck " in line:  # the quick start: the part after the install
                line = "turncheck " + line.split("/bin/turncheck ", 1)[1]
            if line.startswith("turncheck ") or "| turncheck " in line:
                out.append(re.sub(r"\s+#.*$", "", line))
    return out


COMMANDS = readme_commands()


def test_the_readme_has_examples_of_every_command() -> None:
    words = {c.split("| ")[-1].split()[1] for c in COMMANDS}
    assert {"probe", "nat", "load", "creds"} <= words
    assert len(COMMANDS) >= 20


def test_every_command_has_a_docs_page_the_readme_links_to() -> None:
    readme = README.read_text(encoding="utf-8")
    for name in DOC_PAGES:
        page = ROOT / "docs" / f"{name}.md"
        assert page.is_file(), f"{page} is missing"
        assert page in DOCS
        assert f"](docs/{name}.md)" in readme, f"README.md does not link docs/{name}.md"


def _rewrite(command: str, coturn: Coturn, rest: Coturn, peer: tuple[str, int]) -> list[str]:
    stdin_file = None
    if "| turncheck " in command:  # curl … | turncheck …: the body comes from a file here
        before, command = command.split("| turncheck ", 1)
        command = "turncheck " + command
        stdin_file = str(DUMP) if command.startswith("turncheck diagnose") else "ice.json"
        if command.startswith("turncheck diagnose") and "gunzip" in before:  # rtcstats-server's
            stdin_file = str(RTCSTATS)
    server = rest if "--secret-file" in command else coturn
    command = command.replace("/etc/turn/secret", "secret")
    command = command.replace('"$PW"', "s3cret").replace("-u bob", "-u alice")
    command = re.sub(r"--peer \S+", f"--peer {peer[0]}:{peer[1]}", command)
    command = re.sub(r"--clients \d+", "--clients 2", command)
    command = re.sub(r"--duration \d+", "--duration 0.5", command)
    command = re.sub(r"--repeat \d+", "--repeat 2", command)
    command = re.sub(r"--round-interval \d+", "--round-interval 0", command)
    # Example names and ports → the test server (TLS on its TLS port, the rest on its port).
    command = re.sub(
        r"(turns|stuns):[a-z.]+\.example\.com(:\d+)?",
        lambda m: f"{m.group(1)}:localhost:{server.tls_port}",
        command,
    )
    command = re.sub(
        r"(turn|stun):[a-z.]+\.example\.com(:\d+)?",
        lambda m: f"{m.group(1)}:localhost:{server.port}",
        command,
    )
    # Credentials endpoints and dump files of the examples: the test's own stand-ins.
    command = re.sub(
        r"--ice-servers-url https://\S+", "--ice-servers-url https://127.0.0.1:1/x", command
    )
    command = command.replace("webrtc_internals_dump.json", str(DUMP))
    argv = shlex.split(command)
    if argv[1] == "results":  # a results file with the docs' reference (stored_result below)
        argv = [a.replace("/etc/turncheck/turncheck.yml", "results.sqlite") for a in argv]
        argv = ["--db" if a in ("--config", "-c") else a for a in argv]
    if argv[1] == "serve":  # long-running: its config (the README's own) is checked instead
        argv = [a.replace("/etc/turncheck/turncheck.yml", "turncheck.yml") for a in argv]
        argv.append("--check-config")
    has_url = any(":" in a and not a.startswith("-") for a in argv)
    if argv[1] in ("probe", "nat") and not has_url and "--ice-servers" not in argv:
        argv.append(f"stun:127.0.0.1:{server.port}")
    if stdin_file:
        argv.append(f"<{stdin_file}")
    return argv


def stored_result(path: Path, coturn: Coturn) -> None:
    """A results file holding the docs' reference K7F-29Q: the judgement of a page document
    (tests/test_testpage.py's, UDP blocked) beside no server-side check."""
    import sqlite3

    from tests.test_testpage import page_document
    from turncheck.serve.store import Store
    from turncheck.usertest import browser_of, judge, parse_page

    config = {
        "profile": "app",
        "token": "-",
        "iceServers": [
            {
                "urls": [
                    f"turn:localhost:{coturn.port}",
                    f"turn:localhost:{coturn.port}?transport=tcp",
                ]
            }
        ],
    }
    page = parse_page(page_document(config, udp_works=False))
    browser = browser_of(page.user_agent)
    judgement = judge(page, (), browser.name, browser.engine)
    store = Store(str(path))
    store.close()
    record = {
        "profile": "app",
        "browser": browser.to_json(),
        "page": page.to_json(),
        "server_side": {"at": 0, "ok": False, "verdict": "not checked", "checks": []},
        "judgement": judgement.to_json(),
    }
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "K7F-29Q",
                "app",
                1.8e9,
                browser.name,
                int(judgement.ok),
                judgement.verdict,
                judgement.cause,
                json.dumps(record),
            ),
        )


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_example_runs(
    command: str, coturn: Coturn, coturn_factory, ca_file: Path, tmp_path: Path
) -> None:
    rest = coturn_factory(extra=["use-auth-secret", f"static-auth-secret={SECRET}"])
    (tmp_path / "secret").write_text(SECRET + "\n")
    config = {
        "iceServers": [
            {"urls": f"stun:localhost:{coturn.port}"},
            {
                "urls": [f"turn:localhost:{coturn.port}", f"turns:localhost:{coturn.tls_port}"],
                "username": "alice",
                "credential": "s3cret",
            },
        ]
    }
    for name in ("ice.json", "staging.json"):
        (tmp_path / name).write_text(json.dumps(config))
    (tmp_path / "token.txt").write_text("example-token\n")
    serve_config = re.search(r"```yaml\n(# turncheck.yml\n.*?)```", docs_text(), re.S)
    assert serve_config is not None
    (tmp_path / "turncheck.yml").write_text(
        serve_config.group(1).replace("/etc/turncheck/", f"{tmp_path}/")
    )
    for name in ("alice.cred", "ca.pem", "turn-secret"):
        (tmp_path / name).write_text("x\n")
    stored_result(tmp_path / "results.sqlite", coturn)
    with udp_echo_peer() as peer:
        argv = _rewrite(command, coturn, rest, peer)
        stdin = None
        if argv[-1].startswith("<"):
            stdin = (tmp_path / argv.pop()[1:]).read_text()  # an absolute path stays itself
        env = {
            **os.environ,
            "TURNCHECK_USERNAME": "alice",
            "TURNCHECK_CREDENTIAL": "s3cret",
            "SSL_CERT_FILE": str(ca_file),  # the test CA, as a deployment's system store
            "COLUMNS": "100",
            "XIRSYS_AUTH": "Basic example",
        }
        if "--secret-file" in argv:
            env.pop("TURNCHECK_USERNAME")
            env.pop("TURNCHECK_CREDENTIAL")
        done = subprocess.run(
            [sys.executable, "-m", "turncheck", *argv[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=env,
        )
    context = (command, argv, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr, context
    if "--ice-servers-url" in argv:  # no endpoint here: it must fail as one line, exit 2
        assert done.returncode == 2 and "--ice-servers-url https://127.0.0.1:1/x" in done.stderr
        return
    assert done.returncode in (0, 1), context  # 2 would be a README example that is wrong
    if "--output" in argv:  # the file gets the answer, stderr the verdict line
        assert (tmp_path / argv[argv.index("--output") + 1]).read_text().strip(), context
        assert done.stderr.startswith("verdict: ") or "\nverdict: " in done.stderr, context
    else:
        assert done.stdout.strip(), context
