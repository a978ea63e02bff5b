"""turncheck: TURN/STUN connectivity tester.

The package is a house in layers. Data flows one way (input → plan → checks → report →
renderer → exit code), and each module imports only from the layers below its own, never
up and never in a circle. import-linter keeps the picture true (pyproject.toml, run by
.ci/run); it counts function-local and TYPE_CHECKING imports too. A function-local import
is there only to keep start-up fast, and it points down.

    edges       entry, __main__   the console entry point; installs the signal handlers
                cli/              one module per command: options in, renderer and exit code out
                serve/            the exporter (aiohttp): modules, /probe, /metrics; test
                                  pages (/test/NAME) and their stored results
                render/           table, JSON, JUnit, Prometheus, Nagios, load, nat, diagnose
                dumps/            webrtc-internals and rtcstats dumps read and judged
                locust/           `locust -f`: turncheck's load as Locust users (the load hook)
                output, trace     atomic --output files; the -v packet trace
                signals           SIGINT, SIGTERM, SIGHUP: one line, 128 + N, allocations deleted
      │
    runs        api               ProbeOptions in, Report out (CLI, serve, Python callers)
                probe, report     assembling a run's Report: browser view, verdict, notes
                monitor           --repeat rounds and their statistics
                auditing          AuditOptions in, AuditReport out: identity, then every check
      │
    checks      checks            Binding and Allocate checks: coroutines returning values
                relay, nat, load  the relay echo, NAT discovery, load pairs
                audit/            the audit's checks: one per concern → findings
      │
    wire        transport         the only module with sockets (UDP, TCP, TLS channels)
                turn              the TURN client: Allocate, permissions, channels, delete
                resolve           DNS: SRV, A/AAAA, the browser's absolute names
                icefetch          iceServers from an app's credential endpoint (HTTPS)
      │
    knowledge   stun              the STUN codec layer (aioice's codec, our checks on it)
                config            iceServers, credentials, TURN REST secrets, advice
                browser, firefox  what Chromium and Firefox do with a configuration
                explain           every failure in words: reason and hint; verdicts
                plan, require     URL × transport targets; --require gates
                usertest          what the test page measured in a user's browser, judged
      │
    values      results           CheckResult, Candidate, RelayResult, Explanation, NatVerdict
                findings          the audit's findings and their severities
                urls, errors      ICE URLs and addresses; the typed errors
                tlsinfo           certificate facts
"""

__version__ = "0.1.0"
