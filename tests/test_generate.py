"""`revetl generate`: a deterministic, realistic event stream that exercises every identity rule."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from revetl.config import Project, load_project
from revetl.landing.events import LANDING_SCHEMA, normalize
from revetl.landing.generate import JUNK_EMAIL, JUNK_IDS, PLANS, GenerateOptions, generate_events
from revetl.landing.ingest import ingest_files

END = dt.datetime(2024, 7, 1, tzinfo=dt.timezone.utc)
REPO = Path(__file__).resolve().parents[1]
REAL_USER = "user_id like 'usr_%' or regexp_full_match(user_id, '9[0-9]{6}')"  # not a junk value


def generate(tmp: Path, **options: Any) -> tuple[Project, Any]:
    project = load_project(REPO).with_landing_dir(tmp)
    return project, generate_events(project, GenerateOptions(end=END, **options))


def connect(project: Project) -> duckdb.DuckDBPyConnection:
    """A connection with view `e`: every landed row."""
    connection = duckdb.connect()
    connection.execute(
        f"create view e as select * from read_parquet('{project.landing_dir}/**/*.parquet', hive_partitioning = true)"
    )
    return connection


def rows(project: Project, order: str = "message_id, received_at") -> list[tuple[Any, ...]]:
    with connect(project) as db:
        return db.execute(f"select {', '.join(LANDING_SCHEMA.names)} from e order by {order}").fetchall()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    """The default demo stream (2,000 users, 90 days), generated once for this module."""
    project, summary = generate(tmp_path_factory.mktemp("demo"))
    assert summary.users == 2000 and summary.events > 150_000
    with connect(project) as db:
        yield db


def one(db: duckdb.DuckDBPyConnection, query: str) -> Any:
    return db.execute(query).fetchone()[0]


def test_same_options_give_the_same_events_and_another_seed_other_ids(tmp_path: Path) -> None:
    first, _ = generate(tmp_path / "a", users=120, days=30, seed=3)
    again, _ = generate(tmp_path / "b", users=120, days=30, seed=3)
    other, _ = generate(tmp_path / "c", users=120, days=30, seed=4)
    assert rows(first) == rows(again)
    assert {r[0] for r in rows(first)}.isdisjoint({r[0] for r in rows(other)})


def test_every_row_is_what_normalize_makes_of_its_wire_payload(tmp_path: Path) -> None:
    project, summary = generate(tmp_path, users=200, days=30)
    landed = rows(project)
    assert len(landed) == summary.events > 5_000
    received = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)  # never used: every row has receivedAt
    for row in map(lambda values: dict(zip(LANDING_SCHEMA.names, values)), landed):
        payload = {
            "messageId": row["message_id"], "type": row["type"], "userId": row["user_id"],
            "anonymousId": row["anonymous_id"], "groupId": row["group_id"], "previousId": row["previous_id"],
            "timestamp": row["timestamp"].isoformat(), "receivedAt": row["received_at"].isoformat(),
            "name" if row["type"] in ("page", "screen") else "event": row["event"],
        }
        for column in ("properties", "traits", "context"):
            if row[column] is not None:
                payload[column] = json.loads(row[column])
        payload = {key: value for key, value in payload.items() if value is not None}
        assert normalize(payload, received_at=received, raw_size=len(json.dumps(payload))) == row


def test_history_covers_the_days_before_end_one_file_per_received_date(tmp_path: Path) -> None:
    project, summary = generate(tmp_path, users=100, days=20)
    with connect(project) as db:
        first, last = db.execute("select min(timestamp), max(timestamp) from e").fetchone()
        dates = one(db, "select count(distinct received_date) from e")
        mismatched = one(db, "select count(*) from e where cast(received_at as date) <> received_date")
    assert END - dt.timedelta(days=20) <= first and last < END
    assert len(summary.files) == dates == 20 and mismatched == 0
    assert sum(pq.read_metadata(path).num_rows for path in summary.files) == summary.events


def test_users_browse_anonymously_then_identify_with_their_traits(demo: duckdb.DuckDBPyConnection) -> None:
    # An anonymous id whose page views without a userId come before the identify that names it.
    assert one(demo, """
        select count(*) from (
            select i.user_id from e as i join e as p on p.anonymous_id = i.anonymous_id
            where i.type = 'identify' and i.user_id is not null and p.type = 'page' and p.user_id is null
              and p.timestamp < i.timestamp
            group by i.user_id)""") > 100
    keys = demo.execute("select distinct json_keys(traits) from e where type = 'identify' and user_id is not null").fetchall()
    assert {tuple(sorted(k[0])) for k in keys} == {
        ("company", "created_at", "email", "name", "plan"), ("company", "created_at", "name", "plan")}
    plans = {p for (p,) in demo.execute("select distinct traits->>'$.plan' from e where type = 'identify' and user_id is not null").fetchall()}
    assert plans == set(PLANS)


def test_people_use_one_to_three_devices_some_of_them_mobile(demo: duckdb.DuckDBPyConnection) -> None:
    per_user = dict(demo.execute(f"""
        select devices, count(*) from (
            select user_id, count(distinct anonymous_id) as devices from e
            where ({REAL_USER}) and regexp_full_match(anonymous_id, '[0-9a-f-]{{36}}') and anonymous_id not like '00000000-%'
            group by user_id)
        group by devices""").fetchall())
    assert set(per_user) == {1, 2, 3} and per_user[1] > per_user[2] > per_user[3] > 10
    assert one(demo, f"select count(distinct user_id) from e where type = 'screen' and ({REAL_USER})") > 100


def test_aliases_link_anonymous_ids_and_rename_a_few_users(demo: duckdb.DuckDBPyConnection) -> None:
    anon_to_user = one(demo, "select count(*) from e where type = 'alias' and previous_id = anonymous_id")
    renames = demo.execute("select previous_id, user_id from e where type = 'alias' and previous_id <> anonymous_id").fetchall()
    assert anon_to_user > 100
    assert 2 <= len(renames) <= 10 and all(old.isdigit() and new.startswith("usr_") for old, new in renames)
    for old, new in renames:  # the old id is used before the rename, the new one after
        before, after = demo.execute(
            "select max(timestamp) filter (where user_id = $old), min(timestamp) filter (where user_id = $new) from e",
            {"old": old, "new": new}).fetchone()
        assert before <= after


def test_some_devices_are_shared_by_several_users(demo: duckdb.DuckDBPyConnection) -> None:
    shared = demo.execute(f"""
        select anonymous_id, count(distinct user_id) from e
        where ({REAL_USER}) and user_id like 'usr_%' and anonymous_id not in {JUNK_IDS}
        group by anonymous_id having count(distinct user_id) > 1""").fetchall()
    assert 5 <= len(shared) and all(users <= 3 for _, users in shared)


def test_junk_identifiers_appear_on_a_few_events(demo: duckdb.DuckDBPyConnection) -> None:
    junk = demo.execute(f"""
        select value, count(*) from (
            select anonymous_id as value from e where anonymous_id in {JUNK_IDS}
            union all select user_id from e where user_id in {JUNK_IDS})
        group by value""").fetchall()
    total = one(demo, "select count(*) from e")
    assert {value for value, _ in junk} == set(JUNK_IDS)
    assert 0.001 < sum(n for _, n in junk) / total < 0.006


def test_a_junk_email_is_typed_by_more_than_fifty_anonymous_visitors(demo: duckdb.DuckDBPyConnection) -> None:
    visitors, with_user = demo.execute(f"""
        select count(distinct anonymous_id), count(user_id) from e
        where type = 'identify' and lower(trim(traits->>'$.email')) = '{JUNK_EMAIL}'""").fetchone()
    assert visitors > 50 and with_user == 0


def test_emails_come_in_case_and_whitespace_variants_and_in_context_traits(demo: duckdb.DuckDBPyConnection) -> None:
    variants = one(demo, """
        select count(*) from (
            select user_id from e
            where type = 'identify' and user_id like 'usr_%'
            group by user_id
            having count(distinct coalesce(traits->>'$.email', context->>'$.traits.email')) > 1
               and count(distinct lower(trim(coalesce(traits->>'$.email', context->>'$.traits.email')))) = 1)""")
    in_context = one(demo, "select count(*) from e where traits->>'$.email' is null and context->>'$.traits.email' is not null")
    assert variants > 100 and in_context > 100
    assert one(demo, "select count(*) from e where traits->>'$.email' like '% ' and traits->>'$.email' <> lower(traits->>'$.email')") > 0


def test_some_events_are_resent_with_the_same_message_id_and_received_later(demo: duckdb.DuckDBPyConnection) -> None:
    total = one(demo, "select count(distinct message_id) from e")
    duplicates = demo.execute("""
        select count(*), count(distinct (type, event, user_id, anonymous_id, timestamp, properties, context)),
               bool_and(received_at > timestamp)
        from e group by message_id having count(*) > 1""").fetchall()
    assert 0.003 < len(duplicates) / total < 0.008
    assert all(copies == 2 and same_content == 1 for copies, same_content, _ in duplicates)


def test_about_one_percent_of_events_arrive_days_late(demo: duckdb.DuckDBPyConnection) -> None:
    share = one(demo, "select avg(case when received_at > timestamp + interval 1 day then 1 else 0 end) from e")
    assert 0.005 < share < 0.02
    assert one(demo, "select max(received_at - timestamp) from e") < dt.timedelta(days=6)


def test_product_events_carry_their_properties(demo: duckdb.DuckDBPyConnection) -> None:
    events = {name for (name,) in demo.execute("select distinct event from e where type = 'track'").fetchall()}
    # `dashboard_viewed`: a buggy build's misnamed event, one of the flaws the tracking plan catches
    assert events == {"Signed Up", "Logged In", "Report Generated", "Dashboard Viewed", "Invite Sent",
                      "Payment Processed", "Subscription Upgraded", "dashboard_viewed"}
    payments = demo.execute("""
        select json_type(properties, '$.revenue'), properties->>'$.currency', anonymous_id is null, count(*)
        from e where event = 'Payment Processed' group by all""").fetchall()
    # revenue is a number, except on the few payments a billing bug sent with the amount as text
    assert {(kind, anon_missing) for kind, _, anon_missing, _ in payments} == {("DOUBLE", True), ("VARCHAR", True)}
    as_text = sum(count for kind, _, _, count in payments if kind == "VARCHAR")
    assert 0 < as_text < 0.05 * sum(count for *_, count in payments)
    assert {currency for _, currency, _, _ in payments} == {"USD", "EUR", "GBP"}
    assert one(demo, "select count(*) from e where event = 'Dashboard Viewed' and properties->>'$.dashboard' is null") == 0
    assert one(demo, "select count(*) from e where type = 'page' and properties->>'$.path' is null") == 0


def test_every_upgrade_is_followed_by_an_identify_with_the_new_plan(demo: duckdb.DuckDBPyConnection) -> None:
    upgrades, followed = demo.execute("""
        select count(*), count(*) filter (where exists (
            select 1 from e as i where i.type = 'identify' and i.user_id = u.user_id
              and i.timestamp between u.timestamp and u.timestamp + interval 5 second
              and i.traits->>'$.plan' = u.properties->>'$.to_plan'))
        from e as u where u.event = 'Subscription Upgraded' and u.user_id like 'usr_%'""").fetchone()
    assert upgrades > 50 and followed == upgrades


def test_group_calls_name_each_users_company(demo: duckdb.DuckDBPyConnection) -> None:
    mismatched = one(demo, """
        select count(*) from e as g join e as i on i.user_id = g.user_id and i.type = 'identify'
        where g.type = 'group' and g.traits->>'$.name' <> i.traits->>'$.company'""")
    groups = one(demo, "select count(distinct group_id) from e where type = 'group' and group_id like 'grp_%'")
    assert groups > 200 and mismatched == 0


def test_the_demo_audiences_are_not_empty(demo: duckdb.DuckDBPyConnection) -> None:
    latest = f"""
        select user_id, max(timestamp) as last_seen,
               arg_max(traits->>'$.plan', timestamp) filter (where type = 'identify') as plan,
               count(*) filter (where event = 'Report Generated' and timestamp >= '{END}'::timestamptz - interval 30 day) as reports,
               min(traits->>'$.created_at') filter (where type = 'identify') as created_at
        from e where user_id like 'usr_%' group by user_id"""
    churn_risk, power_users, new_signups = demo.execute(f"""
        select count(*) filter (where plan <> 'free' and last_seen < '{END}'::timestamptz - interval 30 day
                                  and last_seen >= '{END}'::timestamptz - interval 60 day),
               count(*) filter (where plan = 'enterprise' and reports >= 10),
               count(*) filter (where created_at::timestamptz >= '{END}'::timestamptz - interval 14 day)
        from ({latest})""").fetchone()
    assert churn_risk > 30 and power_users > 30 and new_signups > 30


def test_jsonl_output_ingests_with_no_rejects_into_the_same_rows(tmp_path: Path) -> None:
    direct, summary = generate(tmp_path / "direct", users=150, days=30)
    exported = tmp_path / "export.jsonl.gz"
    via_file, written = generate(tmp_path / "unused", users=150, days=30, jsonl=exported)
    assert written.files == (exported,) and written.events == summary.events
    assert not (tmp_path / "unused").exists()  # JSON lines instead of Parquet, not as well

    project = load_project(REPO).with_landing_dir(tmp_path / "ingested")
    report = ingest_files(project, [exported])
    assert (report.accepted, report.rejected) == (summary.events, 0)
    assert rows(project) == rows(direct)


def test_the_cli_writes_jsonl_and_prints_a_summary(project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from revetl import cli

    exported = tmp_path / "events.jsonl"
    argv = sys.argv
    sys.argv = ["revetl", "--project-dir", str(project.root), "generate", "--users", "30", "--days", "7",
                "--end", "2024-07-01", "--jsonl", str(exported)]
    try:
        with pytest.raises(SystemExit) as info:
            cli.main()
    finally:
        sys.argv = argv
    assert info.value.code == 0
    lines = exported.read_text().splitlines()
    assert lines and all(json.loads(line)["messageId"] for line in lines)
    assert max(json.loads(line)["timestamp"] for line in lines) < "2024-07-01"
    out = " ".join(capsys.readouterr().out.split())
    assert f"Generated {len(lines):,} events for 30 users" in out


def test_progress_is_shown_on_a_console_then_cleared_and_the_summary_reads_well(tmp_path: Path) -> None:
    out = io.StringIO()
    project = load_project(REPO).with_landing_dir(tmp_path)
    summary = generate_events(project, GenerateOptions(users=20, days=5, end=END),
                              Console(file=out, force_terminal=True, width=120))
    written = out.getvalue()
    frames = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame).strip() for frame in written.split("\r")]
    bars = [frame for frame in frames if frame.startswith("generating ")]
    assert bars and bars[0].endswith("0/5 days, 0 events 0:00:00")
    assert f"5/5 days, {summary.events:,} events" in bars[-1]
    assert written.endswith("\x1b[1A\x1b[2K")  # transient: the bar's line is erased when it is done
    text = summary.__rich__()
    assert text.startswith(f"Generated {summary.events:,} events for 20 users and 66 anonymous visitors in 5 files")


def test_without_a_console_nothing_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = load_project(REPO).with_landing_dir(tmp_path)
    generate_events(project, GenerateOptions(users=5, days=2, end=END))
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(("users", "days"), [(0, 10), (10, 0)])
def test_options_must_be_positive(users: int, days: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GenerateOptions(users=users, days=days)
