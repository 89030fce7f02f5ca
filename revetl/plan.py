"""Plan: an audience's current rows diffed against its sync's acknowledged state, in SQL (DESIGN 6).

`make_plan` reads only. It builds connection-local temp tables and keeps the last, which `apply`
streams (the others are dropped once counted, so that their memory is free for the sync):

    revetl_current     key, payload, row_hash     the audience's rows, mapped (not deduplicated)
    revetl_duplicates  key, n                     keys held by more than one row
    revetl_changed     op, key                    the diff on (key, row_hash) alone
    revetl_diff        op, key, payload, row_hash, dest_ref, previous_payload
                       op is 'add' (new key), 'change' (same key, new row hash) or 'remove' (key gone)

and returns a frozen, printable `Plan` with counts, samples, key problems and the guard's verdict.

Why four steps (bench/plan_bench.py, 10M members against 10M acknowledged rows): grouping the
audience by key to find duplicates, and a full outer join carrying payloads, took 12.3 s and
3.3 GB. Duplicates are found by grouping 64-bit hashes of the keys, then only the suspects by key;
the full join carries (key, row_hash) only; payloads join in for the few rows that differ:
8.7 s and 2.6 GB (10.7 s and 1.2 GB within a 1 GB DuckDB memory limit).

Decisions (README, "Plan"):
- The key is the sync's `identity.from` column cast to text and compared exactly: `ABC` and `abc`
  are different keys (destination ids are case-sensitive), the integer 42 and the text '42' the same.
- The payload is the JSON object of the mapped `fields` (destination name -> value); the row hash is
  its md5, so a trait that is not mapped never causes a change.
- A null key, or a key held by more than one row, is left out and reported; a duplicated key is left
  out of both sides (neither sent nor removed) until the audience is fixed.
- In `upsert` mode, keys that left the audience are not removed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table
from sqlglot import exp

from revetl import state
from revetl.config import Project, SyncConfig

__all__ = ["Guard", "Plan", "make_plan", "plan_sync", "print_plan"]


@dataclass(frozen=True)
class Guard:
    """Whether `revetl sync` may apply the plan without `--force`, and why not."""

    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a sync would change at its destination. Building one has no side effects."""

    sync: str
    audience: str
    mode: str
    planned_at: dt.datetime
    members: int  # audience rows with a valid, unique key
    previous: int  # rows acknowledged by the destination so far
    adds: int
    changes: int
    removes: int
    null_keys: int
    duplicate_keys: int  # distinct keys held by more than one row
    duplicate_examples: tuple[str, ...]
    guard: Guard
    samples: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.adds + self.changes + self.removes

    def to_json(self) -> dict[str, Any]:
        """The machine-readable plan printed by `revetl plan --json`."""
        data = asdict(self)
        data["planned_at"] = self.planned_at.isoformat()
        data["duplicate_examples"] = list(self.duplicate_examples)
        data["samples"] = {op: list(rows) for op, rows in self.samples.items()}
        return data


def _ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _payload_sql(sync: SyncConfig) -> str:
    """JSON text of the mapped fields, keyed by destination field name (sorted: a stable hash)."""
    if not sync.fields:
        return "'{}'"
    pairs = ", ".join(
        f"{_ident(dest)} := {_ident(column)}" for column, dest in sorted(sync.fields.items(), key=lambda kv: kv[1])
    )
    return f"to_json(struct_pack({pairs}))::varchar"


def make_plan(connection: duckdb.DuckDBPyConnection, sync: SyncConfig, audience_sql: str, samples: int = 5) -> Plan:
    """Diff `audience_sql` (a compiled audience) against the sync's state on `connection`.

    Leaves `revetl_diff` as a temp table on the connection for `apply`.
    """
    key = _ident(sync.key)
    connection.execute(
        f"""create or replace temp table revetl_current as
            select cast({key} as varchar) as key, payload, md5(payload) as row_hash
            from (select *, {_payload_sql(sync)} as payload from ({audience_sql}) as audience)"""
    )
    connection.execute(
        """create or replace temp table revetl_duplicates as
           with suspects as (
               select hash(key) as h from revetl_current where key is not null group by h having count(*) > 1
           )
           select key, count(*) as n from revetl_current
           where key is not null and hash(key) in (select h from suspects)
           group by key having count(*) > 1"""
    )
    acked_sql = state.current_state_sql(connection, sync.name)
    removes = "true" if sync.mode == "mirror" else "false"
    connection.execute(
        f"""create or replace temp table revetl_changed as
            with cur as (
                    select key, row_hash from revetl_current c
                    where key is not null and not exists (select 1 from revetl_duplicates d where d.key = c.key)
                ),
                 acked as (
                    select key, row_hash from ({acked_sql}) s
                    where not exists (select 1 from revetl_duplicates d where d.key = s.key)
                 )
            select case when acked.key is null then 'add' when cur.key is null then 'remove' else 'change' end as op,
                   coalesce(cur.key, acked.key) as key
            from cur full outer join acked on cur.key = acked.key
            where acked.key is null or (cur.key is null and {removes}) or cur.row_hash <> acked.row_hash""",
        {"sync": sync.name},
    )
    connection.execute(
        f"""create or replace temp table revetl_diff as
            select d.op, d.key, c.payload, c.row_hash, a.dest_ref, a.payload::varchar as previous_payload
            from revetl_changed d
            left join revetl_current c on c.key = d.key and d.op <> 'remove'
            left join ({acked_sql}) a on a.key = d.key and d.op <> 'add'""",
        {"sync": sync.name},
    )
    counts = dict(connection.execute("select op, count(*) from revetl_changed group by op").fetchall())
    rows, null_keys = connection.execute(
        "select count(*), count(*) filter (where key is null) from revetl_current"
    ).fetchone()
    duplicate_keys, duplicate_rows = connection.execute(
        "select count(*), coalesce(sum(n), 0) from revetl_duplicates"
    ).fetchone()
    members = rows - null_keys - duplicate_rows
    examples = tuple(
        row[0] for row in connection.execute("select key from revetl_duplicates order by n desc, key limit 5").fetchall()
    )
    connection.execute("drop table revetl_current; drop table revetl_duplicates; drop table revetl_changed")
    previous = connection.execute(f"select count(*) from ({acked_sql})", {"sync": sync.name}).fetchone()[0]
    sample_rows: dict[str, tuple[dict[str, Any], ...]] = {}
    for op in state.OPS:
        if counts.get(op):
            rows = connection.execute(
                "select key, payload, previous_payload from revetl_diff where op = ? order by key limit ?",
                [op, samples],
            ).fetchall()
            sample_rows[op] = tuple(
                {"key": k, "fields": json.loads(p or prev or "{}")} for k, p, prev in rows
            )
    adds, changes, removed = counts.get("add", 0), counts.get("change", 0), counts.get("remove", 0)
    return Plan(
        sync=sync.name,
        audience=sync.audience,
        mode=sync.mode,
        planned_at=dt.datetime.now(dt.timezone.utc),
        members=members,
        previous=previous,
        adds=adds,
        changes=changes,
        removes=removed,
        null_keys=int(null_keys),
        duplicate_keys=duplicate_keys,
        duplicate_examples=examples,
        guard=_guard(sync, members, previous, removed),
        samples=sample_rows,
    )


def _guard(sync: SyncConfig, members: int, previous: int, removes: int) -> Guard:
    if previous and members == 0 and sync.mode == "mirror":
        return Guard(False, f"the audience is empty now but {previous:,} members were synced before")
    if previous and removes > sync.max_remove_share * previous:
        return Guard(
            False,
            f"it would remove {removes:,} of {previous:,} members ({removes / previous:.0%}), "
            f"more than max_remove_share {sync.max_remove_share:.0%}",
        )
    return Guard(True)


def plan_sync(project: Project, sync: SyncConfig, connection: duckdb.DuckDBPyConnection | None = None) -> Plan:
    """Compile the sync's audience and plan it; opens the warehouse read-only unless given a connection."""
    from revetl.audiences import compile_audience, load_audience
    from revetl.warehouse import connect, sync_memory_limit

    sql = compile_audience(project, load_audience(project, sync.audience))
    own = connection is None
    connection = connection or connect(project, read_only=True, memory_limit=sync_memory_limit())
    try:
        return make_plan(connection, sync, sql)
    finally:
        if own:
            connection.close()


def print_plan(plan: Plan, console: Console) -> None:
    """Counts, the guard's verdict, key problems and sample rows, as tables."""
    summary = Table(title=f"plan for sync {plan.sync} (audience {plan.audience}, {plan.mode})", title_justify="left")
    for column in ("members", "synced before", "adds", "changes", "removes"):
        summary.add_column(column, justify="right")
    summary.add_row(
        f"{plan.members:,}", f"{plan.previous:,}", f"[green]+{plan.adds:,}", f"[yellow]~{plan.changes:,}",
        f"[red]-{plan.removes:,}",
    )
    console.print(summary)
    if plan.null_keys:
        console.print(f"[yellow]{plan.null_keys:,} rows have a null key and are left out.")
    if plan.duplicate_keys:
        shown = ", ".join(plan.duplicate_examples)
        console.print(f"[yellow]{plan.duplicate_keys:,} keys are held by more than one row and are left out: {shown}")
    for op, rows in plan.samples.items():
        table = Table(title=f"sample {op}s", title_justify="left")
        table.add_column("key")
        table.add_column("fields")
        for row in rows:
            table.add_row(row["key"], json.dumps(row["fields"], default=str)[:120])
        console.print(table)
    if plan.guard.ok:
        console.print("guard: [green]ok[/]" if plan.total else "nothing to do: the destination is up to date")
    else:
        console.print(f"guard: [bold red]refused[/]: {plan.guard.reason}; `revetl sync --force` applies it anyway")
