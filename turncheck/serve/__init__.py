"""turncheck serve: a Prometheus exporter in the manner of blackbox_exporter.

    config.py   the YAML file: modules (how to probe) and limits, with file:line errors
    app.py      the aiohttp application: /probe, /metrics, /-/healthy, /-/reload, /
    metrics.py  the exporter's own metrics (prometheus_client) and the probe's exposition

Probes run on the server's own event loop through turncheck.api, the same run API as the
CLI; every allocation a probe makes is deleted on every path (end, client gone, scrape
timeout, shutdown).
"""
