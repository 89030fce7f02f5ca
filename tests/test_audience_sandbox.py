"""The audience sandbox (issue 13): deny by default, in `audiences check` and in the engine.

An audience may call only the functions revetl knows to be pure and read only the relations
`ref()` renders (and its own CTEs); every connection that runs audience SQL is sandboxed by
DuckDB itself. Seen through the real CLI where the defects were seen there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from wh import empty_project

from revetl.audiences.check import warehouse_if_built
from revetl.audiences.functions import FUNCTIONS, TABLE_FUNCTIONS
from revetl.audiences.sandbox import sandbox_problems
from revetl.audiences.check import check_project
from revetl.audiences.compile import compile_audience, load_audience
from revetl.config import Project
from revetl.errors import ConfigError, QueryError, WarehouseError
from revetl.warehouse.connection import connect

HEADER = "-- description: Test audience.\n-- key: user_id\n"  # the SQL body starts on line 3
PROFILES = "{{ ref('profiles') }}"
SECRET = "sk_fake_4242_do_not_print"


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project with no audiences and a small warehouse: profiles, a build as of Jan 31, and the
    sync state a real project holds beside them (`revetl_state`, with a payload worth stealing)."""
    project = empty_project(tmp_path, monkeypatch)
    connection = connect(project)
    connection.execute("""
        create table profiles as select * from (values ('p1', 'u1', 'ann@x.com'), ('p2', 'u2', 'bob@x.com'))
            as t(profile_id, user_id, email);
        create table build_info as select timestamp '2026-01-31' as as_of;
        create table members as select 'u9' as user_id;
        create schema revetl_state;
        create table revetl_state.acknowledged as select 'u1' as key, '{"api_key": "stolen"}' as payload;
    """)
    connection.close()
    return project


def write(project: Project, name: str, body: str) -> Path:
    path = project.audiences_dir / f"{name}.sql"
    path.write_text(HEADER + body)
    return path


def revetl(project: Project, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m revetl --project-dir ROOT ...` in a subprocess (the environment carries the redirects)."""
    command = [sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args]
    environ = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(command, cwd=project.root, capture_output=True, text=True, timeout=120, env=environ)


ENVIRON = "read_text(''/proc/self/environ'')"
LEAK = (
    "select p.user_id,\n"                                                                   # 3
    f"       regexp_extract(s.content, 'REVETL_TEST_SECRET=([^\\x00]*)', 1) as secret\n"     # 4
    f"from {PROFILES} as p\n"                                                               # 5
    f"cross join json_execute_serialized_sql(json_serialize_sql('select content from {ENVIRON}')) as s\n"  # 6
)


@pytest.mark.slow
def test_check_refuses_sql_run_from_a_string_that_reads_the_environment(tiny):
    write(tiny, "leak", LEAK)

    run = revetl(tiny, "audiences", "check")

    assert run.returncode == 1, run.stdout + run.stderr
    assert "audiences/leak.sql:6: `json_execute_serialized_sql()`" in run.stdout, run.stdout
    assert "audiences/leak.sql:6: `json_serialize_sql()`" in run.stdout, run.stdout


@pytest.mark.slow
def test_preview_refuses_it_and_prints_no_environment_variable(tiny):
    write(tiny, "leak", LEAK)

    run = revetl(tiny, "audiences", "preview", "leak", env={"REVETL_TEST_SECRET": SECRET})

    assert run.returncode == 1
    assert SECRET not in run.stdout + run.stderr
    assert "audiences/leak.sql, line 6: `json_execute_serialized_sql()`" in " ".join(run.stderr.split())
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_check_and_preview_refuse_the_sync_state_read_without_ref(tiny):
    write(tiny, "state", f"select p.user_id, a.payload\nfrom {PROFILES} as p\njoin revetl_state.acknowledged as a\n"
                         "  on a.key = p.user_id\n")

    checked = revetl(tiny, "audiences", "check")
    shown = revetl(tiny, "audiences", "preview", "state")

    assert checked.returncode == 1
    assert "audiences/state.sql:5: `revetl_state.acknowledged` is not read through ref()" in checked.stdout
    assert shown.returncode == 1 and "stolen" not in shown.stdout + shown.stderr
    assert "audiences/state.sql, line 5: `revetl_state.acknowledged`" in " ".join(shown.stderr.split())


@pytest.mark.slow
def test_a_function_of_an_extension_not_loaded_is_refused_without_installing_it(tiny, tmp_path):
    # text() is the excel extension's: a connection that may autoinstall extensions tries to download it.
    write(tiny, "excel", f"select user_id, text(1234.5, '#,##0.0') as amount\nfrom {PROFILES}\n")
    home = tmp_path / "home"
    home.mkdir()

    run = revetl(tiny, "audiences", "check", env={"HOME": str(home)})

    assert run.returncode == 1
    assert "audiences/excel.sql:3: `text()`" in run.stdout, run.stdout
    assert list(home.iterdir()) == []  # no ~/.duckdb/extensions: nothing was installed or even tried


# Each body reaches outside the relations ref() renders; (line of the problem, words of the message).
REFUSED = {
    "bare table": ("select user_id\nfrom members\n", 4, "`members` is not read through ref()"),
    "state schema": ("select key as user_id\nfrom revetl_state.acknowledged\n", 4, "`revetl_state.acknowledged`"),
    "schema-qualified model": ("select user_id\nfrom main.profiles\n", 4, "`main.profiles` is not read through ref()"),
    "catalog views": ("select table_name as user_id\nfrom information_schema.tables\n", 4,
                      "`information_schema.tables` is not read through ref()"),
    "bare name in a subquery": (f"select user_id from {PROFILES}\nwhere user_id in (select user_id from members)\n",
                                4, "`members` is not read through ref()"),
    "CTE used outside its scope": (
        f"select user_id from (with members as (select 1) select 1 as x) as s, members\n", 3, "`members`",
    ),
    "file path": ("select user_id\nfrom 'exports/users.csv'\n", 4, "`'exports/users.csv'` reads a file"),
    "query()": ("select user_id\nfrom query('select * from revetl_state.acknowledged')\n", 4, "`query()`"),
    "catalog function": ("select table_name as user_id\nfrom duckdb_tables()\n", 4, "`duckdb_tables()`"),
    "settings": (f"select user_id, current_setting('memory_limit') as m\nfrom {PROFILES}\n", 3,
                 "`current_setting()`"),
    "variables": (f"select user_id, getvariable('key') as k\nfrom {PROFILES}\n", 3, "`getvariable()`"),
    "sequence": (f"select user_id, nextval('s') as n\nfrom {PROFILES}\n", 3, "`nextval()`"),
    "side effect": (f"select user_id, write_log('x') as w\nfrom {PROFILES}\n", 3, "`write_log()`"),
    "sleep": (f"select user_id, pg_sleep(100) as w\nfrom {PROFILES}\n", 3, "`pg_sleep()`"),
    "a window over a reader": (f"select user_id, read_text('x') over () as w\nfrom {PROFILES}\n", 3,
                               "`read_text()`"),
    "method call": (f"select user_id, 'memory_limit'.current_setting() as m\nfrom {PROFILES}\n", 3,
                    "`current_setting()`"),
    "schema-qualified function": (f"select user_id, main.upper(email) as e\nfrom {PROFILES}\n", 3,
                                  "`main.upper()`"),
    "pivot of a bare table": ("select * from members pivot (count(*) for user_id in ('u1'))\n", 3, "`members`"),
    "random sample": (f"select user_id\nfrom {PROFILES}\nwhere random() < 0.5\n", 5, "`random()`"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_check_refuses_what_reaches_outside_ref_and_pure_functions(tiny, case):
    body, line, words = REFUSED[case]
    path = write(tiny, "bad", body)

    problems = check_project(tiny)

    assert [(p.path, p.line) for p in problems if words in p.message] == [(path, line)], problems
    with pytest.raises(ConfigError, match=f"line {line}: "):  # plan and sync compile through here
        compile_audience(tiny, load_audience(tiny, "bad"))


def test_a_rich_audience_of_pure_functions_passes_and_runs_in_the_sandbox(tiny):
    from revetl.audiences.preview import preview_audience

    write(tiny, "rich", (
        "with recent as (\n"
        "    select profile_id, user_id, lower(trim(email)) as email,\n"
        "           row_number() over (partition by split_part(email, '@', 2) order by user_id) as rank_in_domain\n"
        f"    from {PROFILES}\n"
        "    where user_id is not null and {{ as_of() }} > timestamp '2026-01-01'\n"
        "), nums as (select unnest(range(3)) as n)\n"
        "select r.user_id, r.email, r.rank_in_domain,\n"
        "       hash(r.user_id) % 100 < 50 as in_holdout,\n"
        "       json_extract_string('{\"plan\": \"pro\"}', '$.plan') as plan,\n"
        "       regexp_matches(r.email, '^[a-z]+@') as simple,\n"
        "       list_filter([1, 2, 3], lambda x: x > 1) as big,\n"
        "       {'a': 1, 'b': [r.user_id]} as shape,\n"
        "       strftime(date_trunc('month', {{ as_of() }}), '%Y-%m') as month,\n"
        "       coalesce(r.email, 'none') || '!' as shout,\n"
        "       (select count(*) from nums) as three,\n"
        "       (select max(n) from range(5) as t(n)) as four,\n"
        "       case when r.email like '%@x.com' then 'x' else 'other' end as domain,\n"
        "       try_cast('12' as integer) + 1 as thirteen\n"
        "from recent as r\n"
    ))

    # try_cast is allowed; that it becomes a plain CAST on PostgreSQL is only a warning (test_portable.py)
    assert [(p.line, p.warning) for p in check_project(tiny)] == [(20, True)]
    preview = preview_audience(tiny, "rich")
    assert preview.size == 2 and preview.rows[0][:3] == ("u1", "ann@x.com", 1)
    assert preview.rows[0][-5:] == ("ann@x.com!", 3, 4, "x", 13)


def test_the_check_probe_runs_on_a_sandboxed_connection(tiny, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)

    with warehouse_if_built(tiny) as connection:
        assert connection is not None
        with pytest.raises(QueryError) as caught:
            connection.execute(f"select content from read_text('{secret}')").fetchall()
        assert isinstance(caught.value.__cause__, duckdb.PermissionException)
        with pytest.raises(QueryError, match="locked") as caught:
            connection.execute("set enable_external_access = true")
        assert isinstance(caught.value.__cause__, duckdb.Error)


def test_preview_runs_on_a_sandboxed_connection_even_if_the_check_missed_something(tiny, tmp_path, monkeypatch):
    """Defence in depth: were the static check ever wrong, DuckDB itself still refuses files."""
    from revetl.audiences import preview as audience_preview

    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    write(tiny, "missed", f"select user_id from {PROFILES}\n")
    monkeypatch.setattr(audience_preview, "compile_audience", lambda project, audience: (
        f"select content as user_id from read_text('{secret}')"
    ))

    with pytest.raises(WarehouseError, match="disabled by configuration") as caught:
        audience_preview.preview_audience(tiny, "missed")
    assert SECRET not in str(caught.value)


# ------------------------------------------------------------------ the allowlist itself

# What an audience must never call, whatever the allowlist says: readers, the engine's state, SQL in a string.
NEVER = re.compile(
    r"duckdb_.*|pragma_.*|query.*|read_.*|.*_scan|glob|sniff_csv|parquet_.*|json_execute_serialized_sql"
    r"|json_serialize_sql|json_deserialize_sql|current_setting|getvariable|which_secret|version|.*_metadata"
)


def test_every_allowed_function_exists_and_is_pure():
    catalog: dict[str, list[tuple]] = {}
    for name, kind, stability, side_effects, definition in duckdb.connect().execute(
        "select function_name, function_type, stability, has_side_effects, macro_definition from duckdb_functions()"
    ).fetchall():
        catalog.setdefault(name, []).append((kind, stability, side_effects, definition))

    assert sorted(FUNCTIONS - catalog.keys()) == [] and sorted(TABLE_FUNCTIONS - catalog.keys()) == []
    assert [n for n in FUNCTIONS | TABLE_FUNCTIONS if NEVER.fullmatch(n)] == []
    impure = [n for n in FUNCTIONS | TABLE_FUNCTIONS for _, stability, side, _ in catalog[n]
              if stability == "VOLATILE" or side]
    assert impure == []
    # A name listed for expressions is a scalar, aggregate, window or macro; only UNNEST (a special
    # form in a select list) is otherwise a table function. Table functions are exactly the short list.
    only_tables = [n for n in FUNCTIONS if all(kind in ("table", "table_macro") for kind, *_ in catalog[n])]
    assert only_tables == ["unnest"]
    assert all(any(kind == "table" for kind, *_ in catalog[n]) for n in TABLE_FUNCTIONS)


def test_allowed_macros_call_only_allowed_functions():
    """A macro is SQL: its body must pass the same sandbox, or allowing its name would allow its calls."""
    macros = duckdb.connect().execute(
        "select function_name, macro_definition from duckdb_functions() where function_type = 'macro'"
    ).fetchall()
    bodies = {name: body for name, body in macros if name in FUNCTIONS}

    assert len(bodies) > 40  # list_sum, split_part, nullif, ago, ...
    # Two calls are fixed by DuckDB inside macro bodies, not written by an analyst: list_aggr(l, 'sum')
    # (an aggregate named by the macro, itself listed) and error('... cannot be NULL') (raises).
    fixed = ("`list_aggr()`", "`error()`")
    calls = {name: [m for _, m in sandbox_problems(f"select {body}", ()) if not m.startswith(fixed)]
             for name, body in bodies.items()}
    assert {name: found for name, found in calls.items() if found} == {}
    named = {aggregate for body in bodies.values() for aggregate in re.findall(r"list_aggr\([^']*'(\w+)'", body)}
    assert named and named <= FUNCTIONS
