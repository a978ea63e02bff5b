"""turncheck serve, the Prometheus exporter, against the test coturn: every endpoint, the
scrape-timeout and concurrency rules, allocations deleted on every path, reloads, secrets,
memory and file descriptors, and a real Prometheus scraping it through the README's
relabelling config."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers.coturn import Coturn
from tests.servers.fixtures import require_tool
from tests.servers.ports import free_port_block, release_ports, terminate
from tests.servers.proxy import udp_delay_proxy

SERVE_DOC = Path(__file__).resolve().parents[1] / "docs" / "serve.md"  # the README's serve page
SECRET_PW = "s3cret"  # the test coturn's password: must never show in any answer or log


@dataclass
class Exporter:
    process: subprocess.Popen[str]
    port: int
    config: Path
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 30
    ) -> tuple[int, str, dict[str, str]]:
        request = urllib.request.Request(self.url(path), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read().decode(), dict(answer.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def probe(self, module: str, target: str, **kw: object) -> tuple[int, str, dict[str, str]]:
        query = urllib.parse.urlencode({"module": module, "target": target})
        return self.get(f"/probe?{query}", **kw)  # type: ignore[arg-type]

    def metric(self, name: str, **labels: str) -> float | None:
        _, body, _ = self.get("/metrics")
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None


def write_config(path: Path, coturn: Coturn, extra: str = "", limits: str = "") -> None:
    wrong = path.parent / "wrong.cred"
    wrong.write_text("not-the-password\n")
    path.write_text(
        f"""modules:
  staging:
    username: alice
    credential_env: TURNCHECK_TEST_PW
    timeout: 2
  wrong:
    username: alice
    credential_file: {wrong}
    timeout: 2
{extra}
limits:
  max_concurrent: 4
  queue_timeout: 2
{limits}"""
    )


def start_exporter(config: Path, tmp: Path) -> Exporter:
    port = free_port_block(1)
    log = tmp / "serve.log"
    env = {**os.environ, "TURNCHECK_TEST_PW": SECRET_PW}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "turncheck",
            "serve",
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{port}",
            "--drain",
            "5",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    exporter = Exporter(process, port, config, log)
    for _ in range(200):  # bounded: 10 s
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return exporter
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"serve did not listen: {log.read_text()}")


def stop_exporter(exporter: Exporter) -> None:
    terminate(exporter.process, exporter.process.send_signal, 15)
    release_ports(exporter.port, 1)


@pytest.fixture(scope="module")
def exporter(coturn: Coturn, tmp_path_factory) -> Iterator[Exporter]:
    tmp = tmp_path_factory.mktemp("serve")
    config = tmp / "turncheck.yml"
    write_config(config, coturn)
    server = start_exporter(config, tmp)
    yield server
    stop_exporter(server)


def target(coturn: Coturn) -> str:
    return f"turn:127.0.0.1:{coturn.port}?transport=udp"


def test_probe_answers_prometheus_text_with_the_cli_metrics(exporter, coturn: Coturn) -> None:
    status, body, headers = exporter.probe("staging", target(coturn))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert families["probe_success"].samples[0].value == 1
    assert families["probe_duration_seconds"].samples[0].value > 0
    up = families["turncheck_check_up"].samples
    assert {s.labels["kind"] for s in up} == {"stun", "turn"}
    assert all(s.labels["url"] == target(coturn) for s in up)
    bad = exporter.probe("wrong", target(coturn))
    assert bad[0] == 200 and "probe_success 0" in bad[1]


def test_openmetrics_when_asked(exporter, coturn: Coturn) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om

    status, body, headers = exporter.probe(
        "staging", target(coturn), headers={"Accept": "application/openmetrics-text"}
    )
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    names = {f.name for f in om(body)}
    assert "probe_success" in names
    status, body, headers = exporter.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert body.rstrip().endswith("# EOF")


@pytest.mark.parametrize(
    ("query", "line"),
    [
        ("module=nope&target=stun:x", "unknown module 'nope' (known: staging, wrong)"),
        ("module=staging", "no target: add ?target=<ICE URL>"),
        (
            "module=staging&target=turn%3Ah%3Aabc",
            "'turn:h:abc': the browser throws SyntaxError: ICE server parsing failed: Invalid port",
        ),
    ],
)
def test_bad_requests_are_400_with_one_plain_line(exporter, query: str, line: str) -> None:
    status, body, _ = exporter.get(f"/probe?{query}")
    assert status == 400
    assert body.count("\n") == 1 and body.startswith(line)


def test_healthy_and_the_status_page_escapes(exporter) -> None:
    assert exporter.get("/-/healthy")[:2] == (200, "Healthy\n")
    exporter.get("/probe?" + urllib.parse.urlencode({"module": "<b>x</b>", "target": "<script>"}))
    status, page, headers = exporter.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_exporter_metrics_count_probes_and_allocations(exporter, coturn: Coturn) -> None:
    exporter.probe("staging", target(coturn))
    assert exporter.metric("turncheck_exporter_probes_total", module="staging", result="success")
    created = exporter.metric("turncheck_exporter_allocations_total", event="created")
    deleted = exporter.metric("turncheck_exporter_allocations_total", event="deleted")
    assert created and created == deleted
    assert exporter.metric("turncheck_exporter_probes_in_flight") == 0
    assert exporter.metric("process_open_fds") and exporter.metric("process_resident_memory_bytes")


def test_scrape_timeout_is_honoured(exporter) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        started = time.monotonic()
        status, body, _ = exporter.probe(
            "staging",
            f"turn:127.0.0.1:{silent.getsockname()[1]}?transport=udp",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"},
        )
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert status == 200 and "probe_success 0" in body
    assert elapsed < 2.0, elapsed  # 2 s less the 0.5 s margin, and the answer's way back


def test_reload_endpoint_and_sighup(coturn: Coturn, tmp_path: Path) -> None:
    config = tmp_path / "turncheck.yml"
    write_config(config, coturn)
    server = start_exporter(config, tmp_path)
    try:
        assert server.probe("extra", target(coturn))[0] == 400
        write_config(config, coturn, extra="  extra:\n    timeout: 1\n")
        request = urllib.request.Request(server.url("/-/reload"), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        assert server.probe("extra", f"stun:127.0.0.1:{coturn.port}")[0] == 200
        config.write_text("modules:\n  broken:\n    pasword: x\n")
        request = urllib.request.Request(server.url("/-/reload"), method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        why = info.value.read().decode()
        assert (
            info.value.code == 500 and f"{config}:3: module 'broken': unknown key 'pasword'" in why
        )
        assert server.probe("extra", f"stun:127.0.0.1:{coturn.port}")[0] == 200  # old kept
        write_config(config, coturn, extra="  third:\n    timeout: 1\n")
        server.process.send_signal(signal.SIGHUP)
        for _ in range(100):  # bounded: 5 s
            if server.probe("third", f"stun:127.0.0.1:{coturn.port}")[0] == 200:
                break
            time.sleep(0.05)
        assert server.probe("third", f"stun:127.0.0.1:{coturn.port}")[0] == 200
        assert server.metric("turncheck_exporter_config_reloads_total", result="failure") == 1
    finally:
        stop_exporter(server)


def test_config_errors_at_start_are_exit_2_with_file_and_line(cli, tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("modules:\n  staging:\n    username: alice\n    credential: s3cret\n")
    result = cli("serve", "--config", str(config))
    assert result.code == 2
    assert result.err.startswith(f"turncheck: error: {config}:4: module 'staging': unknown key")
    assert "s3cret" not in result.err
    config.write_text("modules: [\n")
    assert f"{config}:2: not YAML" in cli("serve", "--config", str(config)).err


def test_fifty_concurrent_probes_answer_in_time_and_leave_nothing(
    coturn_factory, tmp_path: Path
) -> None:
    server = coturn_factory(tls=False, relay_range=300)
    config = tmp_path / "turncheck.yml"
    write_config(config, server)
    exporter = start_exporter(config, tmp_path)
    try:
        exporter.probe("staging", target(server))  # warm: imports, first allocation
        fds_before = exporter.metric("process_open_fds")

        def one(_: int) -> tuple[int, float]:
            started = time.monotonic()
            status, _, _ = exporter.probe(
                "staging", target(server), headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"}
            )
            return status, time.monotonic() - started

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(one, range(50)))
        assert {s for s, _ in results} <= {200, 503}
        assert sum(s == 200 for s, _ in results) >= 4
        assert max(t for _, t in results) < 5.0, sorted(t for _, t in results)[-5:]
        # A soak: memory stays flat over repeated probes (bounded: 60 rounds).
        rss = []
        for _ in range(60):
            exporter.probe("staging", target(server))
            rss.append(exporter.metric("process_resident_memory_bytes") or 0)
        assert rss[-1] - rss[9] < 8 * 1024 * 1024, (rss[9], rss[-1])
        assert exporter.metric("process_open_fds") <= (fds_before or 0) + 2
    finally:
        stop_exporter(exporter)
    made, deleted = server.allocation_sessions(settle=3.0)
    assert made and made <= deleted, len(made - deleted)


def test_client_gone_and_sigterm_leave_no_allocation(coturn_factory, tmp_path: Path) -> None:
    server = coturn_factory(tls=False)
    config = tmp_path / "turncheck.yml"
    write_config(config, server)
    with udp_delay_proxy(("127.0.0.1", server.port), delay=0.6) as proxy:
        slow = f"turn:127.0.0.1:{proxy.port}?transport=udp"
        exporter = start_exporter(config, tmp_path)
        try:
            # A client that gives up mid-probe: the handler is cancelled, the clean-up runs.
            with pytest.raises((TimeoutError, urllib.error.URLError)):
                exporter.probe("staging", slow, timeout=1.5)
            # SIGTERM while probes are in flight: they drain, everything is deleted.
            with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
                futures = [pool.submit(exporter.probe, "staging", slow) for _ in range(3)]
                time.sleep(1.5)
                exporter.process.send_signal(signal.SIGTERM)
                exporter.process.wait(timeout=15)
                for future in futures:
                    try:
                        future.result(timeout=15)
                    except Exception:
                        pass
            assert exporter.process.returncode == 0
        finally:
            stop_exporter(exporter)
    made, deleted = server.allocation_sessions(settle=3.0)
    assert made and made <= deleted, len(made - deleted)


def test_no_secret_in_any_answer_or_log_line(exporter, coturn: Coturn) -> None:
    exporter.probe("staging", target(coturn))
    exporter.probe("wrong", target(coturn))
    exporter.probe("staging", "turn:127.0.0.1:1?transport=tcp")
    bodies = [exporter.get(p)[1] for p in ("/", "/metrics", "/-/healthy")]
    bodies += [exporter.probe("staging", target(coturn))[1]]
    bodies += [exporter.log.read_text()]
    for body in bodies:
        assert SECRET_PW not in body and "not-the-password" not in body


# -- the README's configs, checked by the tools that read them ------------------------------


def readme_block(first_line: str) -> str:
    text = SERVE_DOC.read_text(encoding="utf-8")
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"no README block starting with {first_line!r}")


def test_readme_turncheck_config_is_valid(cli, tmp_path: Path) -> None:
    text = readme_block("# turncheck.yml").replace("/etc/turncheck/", f"{tmp_path}/")
    for name in ("alice.cred", "ca.pem", "turn-secret"):
        (tmp_path / name).write_text("x\n")
    config = tmp_path / "turncheck.yml"
    config.write_text(text)
    result = cli("serve", "--config", str(config), "--check-config")
    assert result.code == 0, result.err
    assert "2 modules: staging, staging_tls_gate" in result.out


def test_readme_prometheus_config_and_alert_rule_pass_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rules = tmp_path / "turncheck-rules.yml"
    rules.write_text(readme_block("# turncheck-rules.yml"))
    config = tmp_path / "prometheus.yml"
    config.write_text(readme_block("# prometheus.yml") + f"rule_files: [{rules}]\n")
    done = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tests = tmp_path / "rules-test.yml"
    tests.write_text(
        f"""rule_files: [{rules}]
evaluation_interval: 30s
tests:
  - interval: 30s
    input_series:
      - series: 'probe_success{{job="turncheck",instance="turn:bad.example.com:3478"}}'
        values: '0 0 0 0 0 0'
      - series: 'probe_success{{job="turncheck",instance="turn:good.example.com:3478"}}'
        values: '1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 3m
        alertname: TurnProbeFailing
        exp_alerts:
          - exp_labels:
              severity: page
              job: turncheck
              instance: turn:bad.example.com:3478
            exp_annotations:
              summary: "TURN fails from turn:bad.example.com:3478"
              description: "turncheck says calls through turn:bad.example.com:3478 would not work; see the exporter's status page."
"""
    )
    done = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_systemd_kubernetes_and_icinga_name_real_options(cli) -> None:
    import yaml

    unit = readme_block("# turncheck.service")
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M)
    assert exec_start is not None
    argv = exec_start.group(1).split()
    assert argv[1:3] == ["serve", "--config"] and "--listen" in argv
    deployment = yaml.safe_load(readme_block("# kubernetes"))
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["serve", "--config"]
    serve_help = cli("serve", "--help", env={"COLUMNS": "200"}).out
    probe_help = cli("probe", "--help", env={"COLUMNS": "200"}).out
    for option in [a for a in argv + args if a.startswith("--")]:
        assert option in serve_help, option
    icinga = readme_block("# icinga2")
    for option in re.findall(r'"(--[a-z-]+)"', icinga):
        assert option in probe_help, option
    assert "nagios" in probe_help


def test_a_real_prometheus_scrapes_the_exporter(exporter, coturn: Coturn, tmp_path: Path) -> None:
    """Prometheus (Debian's) with the README's relabelling: probe_success is 1 for the
    healthy target and 0 for the wrong credential, read back through its query API."""
    binary = require_tool("prometheus")
    import yaml

    scrape = yaml.safe_load(readme_block("# prometheus.yml"))
    job = scrape["scrape_configs"][0]
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    job["static_configs"] = [{"targets": [target(coturn)]}]
    job["relabel_configs"][-1]["replacement"] = f"127.0.0.1:{exporter.port}"
    wrong = json.loads(json.dumps(job))
    wrong["job_name"] = "turncheck_wrong"
    wrong["params"] = {"module": ["wrong"]}
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [job, wrong]})
    )
    port = free_port_block(1)
    data = tmp_path / "data"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        values: dict[str, float] = {}
        for _ in range(300):  # bounded: 30 s
            try:
                query = urllib.parse.urlencode({"query": "probe_success"})
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=2
                ) as answer:
                    result = json.loads(answer.read())["data"]["result"]
                values = {r["metric"]["job"]: float(r["value"][1]) for r in result}
                if len(values) == 2:
                    break
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.1)
        assert values == {"turncheck": 1.0, "turncheck_wrong": 0.0}, (
            values,
            (tmp_path / "prometheus.log").read_text()[-2000:],
        )
    finally:
        terminate(process, process.send_signal, 10)
        release_ports(port, 1)
        shutil.rmtree(data, ignore_errors=True)
