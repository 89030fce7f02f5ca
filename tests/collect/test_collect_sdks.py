"""The official Segment and RudderStack Python SDKs, pointed at `revetl collect` by changing only
their host, land identify/track/page/screen/group/alias events that `revetl build` turns into the
`events` model with the right ids, properties and traits.

Segment's SDK sends the write key in the body and as Basic auth, uncompressed by default;
RudderStack's sends it as Basic auth only, gzipped, and puts identify traits in `context.traits`
(landed as sent). Both batch in a background thread and retry.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

pytestmark = pytest.mark.slow


def send_everything(client: Any, tag: str) -> dict[str, str]:
    """One call of each kind through `client`; returns message id by call name."""
    calls = ("identify", "track", "page", "screen", "group", "alias")
    mid = {name: f"{tag}-{name}-{uuid.uuid4().hex[:8]}" for name in calls}
    when = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    traits = {"email": f"{tag}@example.com", "plan": "pro", "seats": 3}
    client.identify(f"{tag}-user", traits, message_id=mid["identify"])
    client.track(f"{tag}-user", "Order Completed", {"order_id": "o-1", "revenue": 42.5, "items": [{"sku": "A"}]},
                 message_id=mid["track"], timestamp=when)
    client.page(f"{tag}-user", "Docs", "Pricing", {"path": "/pricing"}, message_id=mid["page"])
    client.screen(f"{tag}-user", "App", "Home", {"tab": "feed"}, message_id=mid["screen"])
    client.group(f"{tag}-user", f"{tag}-org", {"name": "Initech", "employees": 12}, message_id=mid["group"])
    client.alias(f"{tag}-anon", f"{tag}-user", message_id=mid["alias"])
    return mid


def check_rows(rows: dict[str, dict[str, Any]], mid: dict[str, str], tag: str) -> None:
    """The landed (or modelled) rows carry the ids, properties and traits each call sent."""
    user = f"{tag}-user"
    identify = rows[mid["identify"]]
    assert (identify["type"], identify["user_id"]) == ("identify", user)
    traits = {"email": f"{tag}@example.com", "plan": "pro", "seats": 3}
    if tag == "rud":  # RudderStack's SDK sends identify traits only as `context.traits`
        assert identify["traits"] is None
        assert json.loads(identify["context"])["traits"] == traits
    else:
        assert json.loads(identify["traits"]) == traits
    track = rows[mid["track"]]
    assert (track["type"], track["event"], track["user_id"]) == ("track", "Order Completed", user)
    assert json.loads(track["properties"]) == {"order_id": "o-1", "revenue": 42.5, "items": [{"sku": "A"}]}
    assert json.loads(track["context"])["library"]["name"] == "analytics-python"
    page = rows[mid["page"]]
    assert (page["type"], page["event"]) == ("page", "Pricing")
    assert json.loads(page["properties"]) == {"path": "/pricing"}
    screen = rows[mid["screen"]]
    assert (screen["type"], screen["event"]) == ("screen", "Home")
    group = rows[mid["group"]]
    assert (group["type"], group["group_id"], group["user_id"]) == ("group", f"{tag}-org", user)
    assert json.loads(group["traits"]) == {"name": "Initech", "employees": 12}
    alias = rows[mid["alias"]]
    assert (alias["type"], alias["previous_id"], alias["user_id"]) == ("alias", f"{tag}-anon", user)


def test_segment_and_rudderstack_sdks_land_events_that_build_into_the_events_model(
    collector_factory: Any, keys: dict[str, str], start_revetl: Any, tmp_path: Path
) -> None:
    collector = collector_factory("--flush-seconds", "0.5")
    errors: list[Any] = []

    segment = SegmentClient(keys["web"], host=collector.url, on_error=lambda e, batch: errors.append(e),
                            max_retries=2, upload_interval=0.1)
    segment_ids = send_everything(segment, "seg")
    segment.flush()
    segment.join()

    rudder = RudderClient(keys["server"], host=collector.url, on_error=lambda e, batch: errors.append(e),
                          max_retries=2, upload_interval=0.1)  # gzip=True by default
    rudder_ids = send_everything(rudder, "rud")
    rudder.flush()
    rudder.join()

    # The SDK's sync mode too: each call is one request, answered before the call returns.
    sync = SegmentClient(keys["web"], host=collector.url, sync_mode=True, gzip=True)
    sync_ids = send_everything(sync, "sync")
    assert errors == []

    assert collector.stop() == 0  # SIGTERM: rolls what was acknowledged, then exits cleanly
    landed = collector.landed()
    by_id = {row["message_id"]: row for row in landed}
    assert len(by_id) == len(landed) == 18
    for tag, mid in (("seg", segment_ids), ("rud", rudder_ids), ("sync", sync_ids)):
        check_rows(by_id, mid, tag)
    # The SDK stamped the track call 2026-03-01 12:00 and sent it seconds later from this machine's
    # clock, so the skew correction leaves it (to within the send delay) where it was.
    track_ts = by_id[segment_ids["track"]]["timestamp"].astimezone(dt.timezone.utc)
    assert abs(track_ts - dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)) < dt.timedelta(seconds=30)
    requests = [line for line in collector.lines() if line["msg"] == "request"]
    assert {line["source"] for line in requests} == {"web", "server"}

    build = start_revetl(tmp_path, "build", "--select", "events")
    assert build.returncode == 0, build.stdout + build.stderr
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as warehouse:
        relation = warehouse.sql("select * from events")
        modelled = {row[0]: dict(zip(relation.columns, row)) for row in relation.fetchall()}
    assert len(modelled) == 18
    for tag, mid in (("seg", segment_ids), ("rud", rudder_ids), ("sync", sync_ids)):
        check_rows(modelled, mid, tag)
