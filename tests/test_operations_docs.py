"""The operations docs and the sample dashboard name only metrics that exist, and every
metric is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from durable_sessions.observability import metrics

# Neither the database nor a channel layer backend: the PostgreSQL + Redis pass skips it.
pytestmark = pytest.mark.neutral

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Read from the database at scrape time (durable_sessions/observability/state.py).
STATE_METRICS = {
    "ds_state_up",
    "ds_sessions",
    "ds_runs",
    "ds_queue_oldest_wait_seconds",
    "ds_pending_run_oldest_seconds",
    "ds_approvals_pending",
}
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def app_metrics() -> set[str]:
    names = {
        metric._name for metric in vars(metrics).values() if isinstance(metric, MetricWrapperBase)
    }
    return names | STATE_METRICS


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_every_metric_is_documented_and_the_docs_name_no_other():
    text = (DOCS / "operations.md").read_text()
    table = {base(n) for n in re.findall(r"^\| `(ds_[a-z_]+)`", text, flags=re.MULTILINE)}
    table |= {base(n) for n in re.findall(r"`, `(ds_[a-z_]+)`", text)}
    assert table == app_metrics()
    mentioned = {base(n) for n in re.findall(r"\b(ds_[a-z_]+)\b", text)}
    assert mentioned <= app_metrics() | {"ds_context", "ds_doctor", "ds_erase", "ds_retention"}


def test_the_dashboard_is_valid_json_and_queries_existing_metrics():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    assert exprs
    used = {base(n) for e in exprs for n in re.findall(r"\b(ds_[a-z_]+)\b", e)}
    assert used <= app_metrics()
    assert len(used) >= 15
