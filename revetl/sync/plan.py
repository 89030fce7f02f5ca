"""Plan: an audience's current rows diffed against its sync's acknowledged state, in SQL (DESIGN 6).

`make_plan` reads only. It builds connection-local temp tables and keeps the last, which
`write_diff` streams into a Parquet file for `apply` (the others are dropped once counted, so that
their memory is free for the sync):

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
- Floating-point columns are rounded to 15 significant digits (6 for FLOAT) before they enter the
  payload, and NaN and infinities become null (JSON has neither): the last digits of a double
  depend on summation order, and a sync must not send a "change" that is only that noise.

The diff leaves the warehouse as a Parquet file (`Diff`), so that a sync sends from a file and holds
the warehouse only while it plans: other syncs, plans, previews and builds run meanwhile.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from sqlglot import exp

from revetl.sync import state
from revetl.config import Project, SyncConfig
from revetl.destinations.base import Row
from revetl.errors import StateError, WarehouseError, first_line

__all__ = ["Diff", "Guard", "Plan", "make_plan", "plan_sync", "print_plan", "write_diff"]

READ_ROWS = 20_000  # rows per Arrow batch streamed out of the warehouse
DIFF_COLUMNS = ("op", "key", "payload", "row_hash", "dest_ref", "previous")  # the fields of `Row`, in order


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


# Significant digits kept of floating-point values: what survives a round trip through text.
_DIGITS = {"DOUBLE": 15, "FLOAT": 6}


def _field_sql(column: str, types: dict[str, str]) -> str:
    """A mapped column as it enters the payload: floating-point values rounded (see the module docstring)."""
    digits = _DIGITS.get(types.get(column.lower(), ""))
    name = _ident(column)
    if digits is None:
        return name
    return f"case when isfinite({name}) then cast(printf('%.{digits}g', {name}) as double) end"


def _payload_sql(sync: SyncConfig, types: dict[str, str]) -> str:
    """JSON text of the mapped fields, keyed by destination field name (sorted: a stable hash)."""
    if not sync.fields:
        return "'{}'"
    pairs = ", ".join(
        f"{_ident(dest)} := {_field_sql(column, types)}"
        for column, dest in sorted(sync.fields.items(), key=lambda kv: kv[1])
    )
    return f"to_json(struct_pack({pairs}))::varchar"


def make_plan(connection: duckdb.DuckDBPyConnection, sync: SyncConfig, audience_sql: str, samples: int = 5,
              pending: Sequence[Path] = ()) -> Plan:
    """Diff `audience_sql` (a compiled audience) against the sync's state on `connection`.

    `pending` are journal files of runs not folded into the state yet: what they acknowledged counts.
    Leaves `revetl_diff` as a temp table on the connection for `write_diff`. An error of the engine
    (a bad cast on some row, a full disk while spilling) becomes one WarehouseError sentence.
    """
    try:
        has_pending = state.load_pending(connection, pending)
        return _make_plan(connection, sync, audience_sql, samples, has_pending)
    except duckdb.Error as exc:
        if "failed to offload" in str(exc) or "No space left" in str(exc):
            raise WarehouseError(
                f"planning sync {sync.name} ran out of disk space for DuckDB's temporary files beside the warehouse "
                f"({first_line(exc)}); free some space, or give it more memory with REVETL_SYNC_MEMORY_LIMIT"
            ) from exc
        raise WarehouseError(
            f"audience {sync.audience} failed in the warehouse while planning sync {sync.name}: {first_line(exc)}"
        ) from exc
    finally:
        if pending:
            connection.execute(f"drop table if exists {state.PENDING}")


def _make_plan(connection: duckdb.DuckDBPyConnection, sync: SyncConfig, audience_sql: str, samples: int,
               has_pending: bool) -> Plan:
    relation = connection.sql(f"select * from ({audience_sql}) as audience")
    types = {name.lower(): str(kind) for name, kind in zip(relation.columns, relation.types)}
    key = _ident(sync.key)
    connection.execute(
        f"""create or replace temp table revetl_current as
            select cast({key} as varchar) as key, payload, md5(payload) as row_hash
            from (select *, {_payload_sql(sync, types)} as payload from ({audience_sql}) as audience)"""
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
    acked_sql = state.current_state_sql(connection, has_pending)
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
    ).fetchall()[0]
    duplicate_keys, duplicate_rows = connection.execute(
        "select count(*), coalesce(sum(n), 0) from revetl_duplicates"
    ).fetchall()[0]
    members = rows - null_keys - duplicate_rows
    examples = tuple(
        row[0] for row in connection.execute("select key from revetl_duplicates order by n desc, key limit 5").fetchall()
    )
    connection.execute("drop table revetl_current; drop table revetl_duplicates; drop table revetl_changed")
    previous = connection.execute(f"select count(*) from ({acked_sql})", {"sync": sync.name}).fetchall()[0][0]
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
    """Compile the sync's audience and plan it (`revetl plan`): a read-only, sandboxed connection unless
    given one; runs in progress or left by a crash count with what their journals acknowledged."""
    from revetl.audiences.compile import compile_audience, load_audience
    from revetl.sync.journal import pending_journals
    from revetl.warehouse.connection import connect, sync_memory_limit, work_dir

    sql = compile_audience(project, load_audience(project, sync.audience))
    pending = pending_journals(work_dir(project), sync.name)
    own = connection is None
    connection = connection or connect(project, read_only=True, memory_limit=sync_memory_limit(), sandbox=True)
    try:
        return make_plan(connection, sync, sql, pending=pending)
    finally:
        if own:
            connection.close()


@dataclass(frozen=True)
class Diff:
    """A plan's rows to send, in a Parquet file: `op, key, payload, row_hash, dest_ref, previous`."""

    path: Path
    rows: int

    def batches(self, size: int) -> Iterator[list[Row]]:
        """The rows as `Row`s, in lists of `size` (the last may be shorter); reads one Arrow batch at a time."""
        if not self.rows:
            return
        rows: list[Row] = []
        for batch in pq.ParquetFile(self.path).iter_batches(READ_ROWS, columns=list(DIFF_COLUMNS)):
            rows += map(Row._make, zip(*(column.to_pylist() for column in batch.columns)))
            full = len(rows) - len(rows) % size
            for start in range(0, full, size):
                yield rows[start:start + size]
            rows = rows[full:]
        if rows:
            yield rows


def write_diff(connection: duckdb.DuckDBPyConnection, path: Path) -> Diff:
    """Stream the plan's `revetl_diff` into a Parquet file at `path` (memory: one Arrow batch)."""
    reader = connection.sql(
        "select op, key, payload, row_hash, dest_ref, previous_payload as previous from revetl_diff"
    ).to_arrow_reader(READ_ROWS)
    rows = 0
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(temporary, reader.schema, compression="lz4") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StateError(f"could not write the plan to {path}: {exc.strerror or exc}") from None
    except duckdb.Error as exc:
        temporary.unlink(missing_ok=True)
        raise WarehouseError(f"could not read the plan out of the warehouse: {first_line(exc)}") from exc
    finally:
        reader.close()
    return Diff(path, rows)


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
