"""Audiences (DESIGN 4): compile, check, list, preview.

Most tests use a copy of the project with a tiny hand-made warehouse (or none); the shipped
audiences run on a small generated and built project (slow).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlglot
from wh import empty_project

from revetl.audiences.check import check_project
from revetl.audiences.compile import audience_names, compile_audience, load_audience
from revetl.config import Project
from revetl.errors import ConfigError
from revetl.warehouse.connection import connect

HEADER = "-- description: Test audience.\n-- key: user_id\n"  # the SQL body starts on line 3


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A copy of the repository's project with no audiences, no syncs and no warehouse yet."""
    return empty_project(tmp_path, monkeypatch)


@pytest.fixture
def tiny(proj: Project) -> Project:
    """`proj` with a small readable warehouse: three profiles, their traits and a build as of Jan 31."""
    connection = connect(proj)
    connection.execute("""
        create table profiles as select * from (values
            ('p1', 'u1', 'ann@x.com', 'enterprise', timestamp '2026-01-30 10:00'),
            ('p2', 'u2', 'bob@x.com', 'pro',        timestamp '2025-12-10 10:00'),
            ('p3', null, 'cy@x.com',  'free',       timestamp '2026-01-20 10:00')
        ) as t(profile_id, user_id, email, plan, last_seen_at);
        create table profile_traits as select * from (values ('p1', 12), ('p2', 0), ('p3', 3))
            as t(profile_id, reports_30d);
        create table build_info as select timestamp '2026-01-31' as as_of, timestamp '2026-01-31 00:05' as built_at;
    """)
    connection.close()
    return proj


def write(project: Project, name: str, body: str, header: str = HEADER) -> Path:
    path = project.audiences_dir / f"{name}.sql"
    path.write_text(header + body)
    return path


def write_sync(project: Project, name: str, text: str) -> Path:
    path = project.syncs_dir / f"{name}.yml"
    path.write_text(text)
    return path


def revetl(project: Project, *args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("revetl")), *args]
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps tables at the terminal width
    return subprocess.run(command, cwd=project.root, capture_output=True, text=True, timeout=120, env=env)


PROFILES = "{{ ref('profiles') }}"

# (body after the 2-line header, line of the problem in the file, words the message must hold)
REJECTED = {
    "two statements": (f"select user_id from {PROFILES};\nselect 1 as user_id\n", 4, "second SQL statement"),
    "no statement": ("\n-- nothing here yet\n", 3, "no SQL statement"),
    "create table": ("create table x as select 1 as user_id\n", 3, "`CREATE` is not allowed"),
    "drop": ("drop table profiles\n", 3, "`DROP` is not allowed"),
    "insert": (f"insert into x\nselect user_id from {PROFILES}\n", 3, "`INSERT` is not allowed"),
    "update": ("update profiles set plan = 'free'\n", 3, "`UPDATE` is not allowed"),
    "delete": ("delete from profiles\n", 3, "`DELETE` is not allowed"),
    "insert in a CTE": (
        f"with moved as (\n  insert into x select 1 returning *\n)\nselect user_id from {PROFILES}\n", 4,
        "`INSERT` is not allowed",
    ),
    "attach": ("attach 'other.duckdb' as other\n", 3, "`ATTACH` is not allowed"),
    "copy": (f"copy (select user_id from {PROFILES}) to 'out.csv'\n", 3, "`COPY` is not allowed"),
    "install": ("install httpfs\n", 3, "`INSTALL` is not allowed"),
    "load": ("load httpfs\n", 3, "`LOAD` is not allowed"),
    "pragma": ("pragma database_list\n", 3, "`PRAGMA` is not allowed"),
    "set": ("set threads = 1\n", 3, "`SET` is not allowed"),
    "select then set": (f"select user_id from {PROFILES};\nset threads = 1\n", 4, "`SET` is not allowed"),
    **{
        f"{function}()": (
            f"select p.user_id\nfrom {PROFILES} as p\njoin {function}({args}) as f on f.id = p.user_id\n", 5,
            f"`{function}()` reads outside the warehouse",
        )
        for function, args in [
            ("read_csv", "'x.csv'"), ("read_csv_auto", "'x.csv'"), ("read_parquet", "'x.parquet'"),
            ("read_json", "'x.json'"), ("read_json_auto", "'x.json'"), ("read_text", "'x.txt'"),
            ("read_blob", "'x.bin'"), ("glob", "'*.csv'"), ("parquet_scan", "'x.parquet'"),
            ("sqlite_scan", "'x.db', 't'"), ("postgres_scan", "'dbname=x', 'public', 't'"),
            ("iceberg_scan", "'s3://b/t'"), ("query_table", "'profiles'"),
        ]
    },
    "read_csv in a subquery": (
        f"select user_id from {PROFILES}\nwhere email in (\n  select email from read_csv('list.csv')\n)\n", 5,
        "`read_csv()` reads outside",
    ),
    "getenv": (f"select user_id, getenv('BRAZE_API_KEY') as secret\nfrom {PROFILES}\n", 3, "`getenv()`"),
    "file path as table": ("select user_id\nfrom 'exports/users.csv'\n", 4, "`'exports/users.csv'` reads a file"),
    "quoted file path as table": ('select user_id\nfrom "users.parquet"\n', 4, "`'users.parquet'` reads a file"),
    "unknown ref": ("select user_id\nfrom {{ ref('profilez') }}\n", 4, "ref('profilez') names no dbt model"),
    "key column missing": (f"select email\nfrom {PROFILES}\n", 2, "the key column `user_id` is not an output column"),
    "unnamed column": (f"select user_id, count(*)\nfrom {PROFILES}\ngroup by 1\n", 3, "has no name"),
    "column named twice": (f"select user_id,\n  email as user_id\nfrom {PROFILES}\n", 4, "`user_id` appears twice"),
    "syntax error": (f"select user_id\nfrom {PROFILES}\nwhere\n", 5, "cannot be parsed"),
    "jinja error": ("select user_id\nfrom {{ reff('profiles') }}\n", 4, "'reff' is undefined"),
    "select * before a build": (f"select *\nfrom {PROFILES}\n", 3, "`SELECT *` hides the output columns"),
}


@pytest.mark.parametrize("case", REJECTED, ids=list(REJECTED))
def test_rejected_audience_names_file_and_line(proj, case):
    body, line, words = REJECTED[case]
    path = write(proj, "bad", body)

    problems = check_project(proj)

    assert [(p.path, p.line) for p in problems if words in p.message] == [(path, line)], problems
    assert str(problems[0]).startswith(f"{path}:")
    if case != "select * before a build":  # compile_audience leaves `*` to the warehouse
        with pytest.raises(ConfigError) as caught:
            compile_audience(proj, load_audience(proj, "bad"))
        assert f"{path}, line {line}: " in str(caught.value)


def test_line_numbers_follow_the_file_through_jinja(proj):
    path = write(proj, "looped", (
        "select\n"                                   # 3
        "    user_id,\n"                             # 4
        "{% for n in [1, 2, 3] %}\n"                 # 5
        "    {{ n }} as c{{ n }},\n"                 # 6
        "{% endfor %}\n"                             # 7
        "    email\n"                                # 8
        f"from {PROFILES}\n"                         # 9
        "where plan in (select plan from read_parquet('plans.parquet'))\n"  # 10
    ))

    problems = check_project(proj)

    assert [(p.path, p.line) for p in problems] == [(path, 10)], problems


def test_every_problem_is_reported_not_just_the_first(proj):
    path = write(proj, "many", (
        "select user_id, email\n"                     # 3
        "from {{ ref('profilez') }}\n"                # 4
        "join read_csv('x.csv') as f using (email);\n"  # 5
        "delete from profiles\n"                      # 6
    ))

    lines = sorted((p.line, p.message.split(" ")[0]) for p in check_project(proj))

    assert lines == [(4, "ref('profilez')"), (5, "`read_csv()`"), (6, "`DELETE`"), (6, "a")]
    assert all(p.path == path for p in check_project(proj))


def test_valid_audience_with_ctes_windows_and_joins_passes(proj):
    write(proj, "ranked", (
        "with reports as (\n"
        "    select profile_id, reports_30d,\n"
        "           rank() over (order by reports_30d desc) as reports_rank\n"
        "    from {{ ref('profile_traits') }}\n"
        "),\n"
        "recent as (\n"
        "    select profile_id from {{ ref('profiles') }}\n"
        "    where last_seen_at > {{ as_of() }} - interval 7 days\n"
        ")\n"
        "select p.user_id, p.email, r.reports_30d, r.reports_rank,\n"
        "       sum(r.reports_30d) over (partition by p.plan) as plan_reports\n"
        "from {{ ref('profiles') }} as p\n"
        "join reports as r using (profile_id)\n"
        "left join recent using (profile_id)\n"
        "where p.user_id is not null;  -- a trailing semicolon and comment are fine\n"
    ))

    assert check_project(proj) == []
    sql = compile_audience(proj, load_audience(proj, "ranked"))
    assert '"warehouse"."main"."profile_traits"' in sql and "{{" not in sql
    assert sql.rstrip().endswith("p.user_id is not null")
    sqlglot.parse_one(f"select count(*) from ({sql}) as audience", read="duckdb")


def test_header_problems_name_the_line(proj):
    write(proj, "nokey", "select user_id from {{ ref('profiles') }}\n", header="-- description: x\n")
    write(proj, "typo", "select user_id from {{ ref('profiles') }}\n", header=HEADER + "-- ownr: me\n")
    write(proj, "noheader", "select user_id from {{ ref('profiles') }}\n", header="")
    write(proj, "badyaml", "select 1 as user_id\n", header=HEADER + "-- this is: not: yaml\n")
    found = {(p.path.stem, p.line): p.message for p in check_project(proj)}
    assert found[("nokey", 1)].startswith("the header has no `key`")
    assert found[("typo", 3)].startswith("the header key `ownr` is unknown")
    assert found[("noheader", 1)].startswith("an audience starts with a YAML header")
    assert found[("badyaml", 3)].startswith("the header is not valid YAML")


def test_unknown_audience_lists_the_known_ones(proj):
    write(proj, "alpha", "select user_id from {{ ref('profiles') }}\n")
    with pytest.raises(ConfigError, match="no audience named 'beta'.*known audiences: alpha"):
        load_audience(proj, "beta")
    assert audience_names(proj) == ["alpha"]
    audience = load_audience(proj, "alpha")
    assert (audience.description, audience.key, audience.body_line) == ("Test audience.", "user_id", 3)


SYNC = """\
audience: {audience}
destination:
  type: braze
  base_url: ${{AUD_TEST_ENDPOINT:-http://localhost:4010}}
  api_key: ${{AUD_TEST_UNSET_KEY}}
identity: {{from: {key}, to: external_id}}
fields:
  email: email
  {field}: {field}
"""


def test_sync_problems_name_the_sync_file_and_line(proj, monkeypatch):
    monkeypatch.delenv("AUD_TEST_UNSET_KEY", raising=False)
    write(proj, "members", f"select user_id, email, plan\nfrom {PROFILES}\n")
    unknown = write_sync(proj, "unknown", SYNC.format(audience="nobody", key="user_id", field="plan"))
    columns = write_sync(proj, "columns", SYNC.format(audience="members", key="uid", field="seats"))
    typo = write_sync(proj, "typo", SYNC.format(audience="members", key="user_id", field="plan") + "mdoe: mirror\n")

    found = sorted((p.path.name, p.line, p.message) for p in check_project(proj))

    assert found == sorted([
        (unknown.name, 1, "audience `nobody` does not exist (no audiences/nobody.sql); known audiences: members"),
        (unknown.name, 5, "environment variable AUD_TEST_UNSET_KEY is not set"),
        (columns.name, 5, "environment variable AUD_TEST_UNSET_KEY is not set"),
        (columns.name, 6, "identity.from column `uid` is not an output column of audience `members` "
                          "(it has: user_id, email, plan)"),
        (columns.name, 9, "fields maps `seats`, which is not an output column of audience `members` "
                          "(it has: user_id, email, plan)"),
        (typo.name, 5, "environment variable AUD_TEST_UNSET_KEY is not set"),
        (typo.name, 10, "`mdoe` unknown key; did you mean `mode`?"),
    ])
    monkeypatch.setenv("AUD_TEST_UNSET_KEY", "secret")
    assert [p.path.name for p in check_project(proj)] == [columns.name, columns.name, typo.name, unknown.name]


def test_audiences_check_cli_prints_every_problem_and_exits_1(proj):
    write(proj, "good", f"select user_id, email\nfrom {PROFILES}\n")
    write(proj, "bad", f"select user_id\nfrom {PROFILES};\nattach 'x.duckdb'\n")

    run = revetl(proj, "audiences", "check")

    assert run.returncode == 1, run.stderr
    assert "audiences/bad.sql:5: a second SQL statement starts here" in run.stdout
    assert "audiences/bad.sql:5: `ATTACH` is not allowed" in run.stdout
    assert "2 problem(s) in 2 audiences and 0 syncs" in run.stdout
    (proj.audiences_dir / "bad.sql").unlink()
    assert revetl(proj, "audiences", "check").returncode == 0


# ------------------------------------------------------------------ with a (tiny) warehouse


def test_select_star_columns_come_from_the_warehouse(tiny):
    write(tiny, "everyone", f"select *\nfrom {PROFILES}\n")
    write(tiny, "nokey", "select * exclude (user_id)\nfrom {{ ref('profiles') }}\n")
    write(tiny, "typo", f"select user_id\nfrom {PROFILES}\nwhere plna = 'pro'\n")

    found = [(p.path.stem, p.line, p.message) for p in check_project(tiny)]

    assert found[0][:2] == ("nokey", 2) and "the audience has: profile_id, email, plan, last_seen_at" in found[0][2]
    assert found[1][:2] == ("typo", 5) and 'Referenced column "plna" not found' in found[1][2]
    assert len(found) == 2


def test_as_of_is_the_latest_build_and_preview_shows_size_and_rows(tiny):
    from revetl.audiences.preview import preview_audience

    write(tiny, "recent", (
        "select user_id, email, date_diff('day', last_seen_at, {{ as_of() }}) as days_since\n"
        f"from {PROFILES}\n"
        "where user_id is not null and last_seen_at > {{ as_of() }} - interval 30 days\n"
    ))

    preview = preview_audience(tiny, "recent", limit=5)

    assert (preview.size, preview.columns) == (1, ["user_id", "email", "days_since"])
    assert preview.rows == [("u1", "ann@x.com", 1)]  # Jan 30 10:00 is one day boundary before Jan 31
    assert preview.as_of == dt.datetime(2026, 1, 31)


def test_audiences_list_and_preview_cli(tiny):
    write(tiny, "enterprise", (
        "select p.user_id, p.email, p.plan, t.reports_30d\n"
        f"from {PROFILES} as p join {{{{ ref('profile_traits') }}}} as t using (profile_id)\n"
        "where p.user_id is not null\n"
    ))
    write(tiny, "broken", "select 1 as user_id from read_csv('x.csv')\n")

    listed = revetl(tiny, "audiences", "list")
    shown = revetl(tiny, "audiences", "preview", "enterprise", "--limit", "1")

    assert listed.returncode == 0, listed.stderr
    assert "user_id, email, plan, reports_30d" in " ".join(listed.stdout.split())
    assert "1 problem(s)" in listed.stdout and " - " in listed.stdout  # no known size yet
    assert shown.returncode == 0, shown.stderr
    assert "2 members as of 2026-01-31 00:00:00 (key user_id)" in shown.stdout
    assert "ann@x.com" in shown.stdout and "bob@x.com" not in shown.stdout  # first by key only
    missing = revetl(tiny, "audiences", "preview", "nope")
    assert missing.returncode == 1 and "known audiences: broken, enterprise" in " ".join(missing.stderr.split())


# ------------------------------------------------------------------ the shipped audiences, really built


END = dt.datetime(2026, 1, 1)


@pytest.fixture(scope="module")
def built(module_project: Project) -> Project:
    """The repository's project (its audiences/) on 300 generated users, built as of END."""
    from wh import build

    from revetl.landing.generate import GenerateOptions, generate_events

    generate_events(module_project, GenerateOptions(users=300, days=90, seed=7, end=END))
    build(module_project, as_of=END)
    return module_project


@pytest.mark.slow
@pytest.mark.xdist_group("audiences")
def test_shipped_audiences_compile_and_have_members(built):
    connection = connect(built, read_only=True)
    try:
        sizes = {}
        for name in ("churn_risk", "power_users", "new_signups"):
            sql = compile_audience(built, load_audience(built, name))
            rows = connection.execute(f"select user_id, email, plan from ({sql}) as audience").fetchall()
            assert len({row[0] for row in rows}) == len(rows), f"{name}: user_id is not unique"
            sizes[name] = len(rows)
        plans = {name: {row[0] for row in connection.execute(
            f"select distinct plan from ({compile_audience(built, load_audience(built, name))}) as a").fetchall()}
            for name in ("churn_risk", "power_users")}
    finally:
        connection.close()
    assert all(size >= 5 for size in sizes.values()), sizes
    assert plans["power_users"] == {"enterprise"} and "free" not in plans["churn_risk"]


@pytest.mark.slow
@pytest.mark.xdist_group("audiences")
def test_shipped_audiences_pass_the_check(built):
    audiences_dir = built.audiences_dir
    problems = [p for p in check_project(built) if p.path.parent == audiences_dir]
    assert problems == []
    assert {"churn_risk", "power_users", "new_signups"} <= set(audience_names(built))


@pytest.mark.slow
@pytest.mark.xdist_group("audiences")
def test_shipped_audiences_have_the_same_members_on_postgresql(built, postgres_database):
    """The built models copied as they are to PostgreSQL (dbt's build there is tested on its own): each shipped
    audience, translated by sqlglot with its macros' PostgreSQL bodies, finds the same rows there."""
    from revetl.config import load_project

    on_postgres = load_project(built.root, "postgres")
    with connect(built, read_only=True) as embedded, connect(on_postgres) as server:
        for model in ("profiles", "profile_traits", "build_info"):
            server.ingest(model, embedded.stream(f"select * from {model}"), temporary=False)
        for name in ("churn_risk", "power_users", "new_signups"):
            expected = embedded.fetchall(compile_audience(built, load_audience(built, name)))
            found = server.fetchall(compile_audience(on_postgres, load_audience(on_postgres, name)))
            assert len(expected) >= 5 and sorted(found) == sorted(expected), name
