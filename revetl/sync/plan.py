"""Plan: an audience's current rows diffed against its sync's acknowledged state, in SQL (DESIGN 6).

`make_plan` reads only. It builds connection-local temp relations and keeps the last (the others
are dropped once counted, so that their memory is free for the sync):

    revetl_audience    a view of the audience's query, as compiled (the one SQL revetl did not write)
    revetl_current     key, payload, row_hash     the audience's rows, mapped (not deduplicated)
    revetl_duplicates  key, n                     keys held by more than one row
    revetl_changed     op, key                    the diff on (key, row_hash) alone
    revetl_diff        op, key, payload, row_hash, dest_ref, previous: the fields of `Row`, by name
                       op is 'add' (new key), 'change' (same key, new row hash) or 'remove' (key gone)

and returns a frozen, printable `Plan` with counts, samples, key problems, the guard's verdict and
the version of the sync's state it read (state.version). `write_diff` streams `revetl_diff` into a
Parquet file beside the warehouse and returns the same plan owning that `Diff`: what `apply` takes.
`revetl_current` is made by mapping.py. The SQL is sqlglot expressions and templates (warehouse/dialect.py)
rendered for the connection, each temp relation dropped and made anew (PostgreSQL has no `create or
replace` of a table).

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
- The payload is the same text on every warehouse for the same values (dialect.json_object: DuckDB's
  `to_json`, spelled out on PostgreSQL), so plans made on DuckDB and on PostgreSQL agree, row hash by row
  hash, and a sync moved from one to the other resends nothing.
- On PostgreSQL the audience is read in a read-only transaction (dialect.READ_ONLY), whatever the session.

The diff leaves the warehouse as a Parquet file (`Diff`), so that a sync sends from a file and holds
the warehouse only while it plans: other syncs, plans, previews and builds run meanwhile.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from revetl.config import Project, SyncConfig
from revetl.destinations.base import Row
from revetl.errors import QueryError, StateError, WarehouseError
from revetl.runtime import SYSTEM, Clock
from revetl.sync import state
from revetl.sync.mapping import AUDIENCE, audience_types, map_rows, payload_expression
from revetl.warehouse.base import Connection
from revetl.warehouse.dialect import Template, drop_table

__all__ = ["Diff", "Guard", "Plan", "make_plan", "payload_expression", "plan_sync", "print_plan", "write_diff"]

READ_ROWS = 20_000  # rows per Arrow batch streamed out of the warehouse
DIFF_COLUMNS = Row._fields  # the plan's rows are stored, and read back, by the names of `Row`'s fields


@dataclass(frozen=True)
class Guard:
    """Whether `revetl sync` may apply the plan without `--force`, and why not."""

    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class Diff:
    """A plan's rows to send, in a Parquet file beside the warehouse (`<work_dir>/syncs/<sync>/`):
    one row per planned change, its columns named as `Row`'s fields (`columns`)."""

    path: Path
    rows: int
    columns: tuple[str, ...] = DIFF_COLUMNS

    def iter_batches(self, size: int) -> Iterator[list[Row]]:
        """The rows as `Row`s, in lists of `size` (the last may be shorter); reads one Arrow batch at a time.
        Columns are read by name, in the order of `Row`'s fields."""
        if not self.rows:
            return
        import pyarrow.parquet as pq  # loaded when there are rows to send

        rows: list[Row] = []
        for batch in pq.ParquetFile(self.path).iter_batches(READ_ROWS, columns=list(Row._fields)):
            rows += map(Row._make, zip(*(batch.column(name).to_pylist() for name in Row._fields)))
            full = len(rows) - len(rows) % size
            for start in range(0, full, size):
                yield rows[start:start + size]
            rows = rows[full:]
        if rows:
            yield rows

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Plan:
    """What a sync would change at its destination. Building one has no side effects.

    `state_version` is the version of the sync's acknowledged rows the plan was made against: apply
    refuses the plan once the state has moved on. `diff` holds the rows to send once `write_diff`
    kept them (None for a plan made to be shown, or with nothing to send)."""

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
    state_version: int = 0
    diff: Diff | None = None

    @property
    def total(self) -> int:
        return self.adds + self.changes + self.removes

    def to_json(self) -> dict[str, Any]:
        """The machine-readable plan printed by `revetl plan --json`."""
        data = asdict(dataclasses.replace(self, diff=None))
        del data["diff"]
        data["planned_at"] = self.planned_at.isoformat()
        data["duplicate_examples"] = list(self.duplicate_examples)
        data["samples"] = {op: list(rows) for op, rows in self.samples.items()}
        return data


# Duplicates: 64-bit hashes of the keys grouped first, then only the suspects by key.
_DUPLICATES = Template("""create temp table revetl_duplicates as
    with suspects as (
        select revetl_hash64(key) as h from revetl_current where key is not null group by h having count(*) > 1
    )
    select key, count(*) as n from revetl_current
    where key is not null and revetl_hash64(key) in (select h from suspects)
    group by key having count(*) > 1""")
# The diff on (key, row_hash) alone; `acked_state` is the sync's acknowledged rows (state.current_state).
_CHANGED = Template("""create temp table revetl_changed as
    with cur as (
            select key, row_hash from revetl_current c
            where key is not null and not exists (select 1 from revetl_duplicates d where d.key = c.key)
        ),
         acked as (
            select key, row_hash from acked_state s
            where not exists (select 1 from revetl_duplicates d where d.key = s.key)
         )
    select case when acked.key is null then 'add' when cur.key is null then 'remove' else 'change' end as op,
           coalesce(cur.key, acked.key) as key
    from cur full outer join acked on cur.key = acked.key
    where acked.key is null or (cur.key is null and $removes) or cur.row_hash <> acked.row_hash""")
# Payloads join in for the few rows that differ.
_DIFF = Template("""create temp table revetl_diff as
    select d.op, d.key, c.payload, c.row_hash, a.dest_ref, a.payload::varchar as previous
    from revetl_changed d
    left join revetl_current c on c.key = d.key and d.op <> 'remove'
    left join acked_state a on a.key = d.key and d.op <> 'add'""")
_COUNTS = Template("select op, count(*) from revetl_changed group by op")
_ROWS = Template("select count(*), count(*) filter (where key is null) from revetl_current")
_DUPLICATED = Template("select count(*), coalesce(sum(n), 0) from revetl_duplicates")
_EXAMPLES = Template("select key from revetl_duplicates order by n desc, revetl_bytewise(key) limit 5")
_PREVIOUS = Template("select count(*) from acked_state")
_SAMPLES = Template("""select key, payload, previous from revetl_diff where op = $op
    order by revetl_bytewise(key) limit $limit""")


def _create(connection: Connection, name: str, template: Template, parameters: dict[str, Any] | None = None) -> None:
    """The temp table `name` made anew by `template` (`create temp table name as ...`)."""
    connection.execute(drop_table(name))
    connection.execute(template, parameters)


def make_plan(connection: Connection, sync: SyncConfig, audience_sql: str, samples: int = 5,
              pending: Sequence[Path] = (), clock: Clock = SYSTEM) -> Plan:
    """Diff `audience_sql` (a compiled audience) against the sync's state on `connection`.

    `pending` are journal files of runs not folded into the state yet: what they acknowledged counts.
    Leaves `revetl_diff` as a temp table on the connection for `write_diff`. An error of the engine
    (a bad cast on some row, a full disk while spilling) becomes one WarehouseError sentence.
    """
    try:
        version = state.version(connection, sync.name)
        has_pending = state.load_pending(connection, pending)
        return _make_plan(connection, sync, audience_sql, samples, has_pending, version, clock)
    except QueryError as exc:
        if exc.out_of_disk:
            raise WarehouseError(
                f"planning sync {sync.name} ran out of disk space for DuckDB's temporary files beside the warehouse "
                f"({exc}); free some space, or give it more memory with REVETL_SYNC_MEMORY_LIMIT"
            ) from exc
        raise WarehouseError(
            f"audience {sync.audience} failed in the warehouse while planning sync {sync.name}: {exc}"
        ) from exc
    finally:
        if pending:
            connection.execute(drop_table(state.PENDING))


def _make_plan(connection: Connection, sync: SyncConfig, audience_sql: str, samples: int, has_pending: bool,
               version: int, clock: Clock) -> Plan:
    run = connection.fetchall
    connection.relation(AUDIENCE, audience_sql)
    map_rows(connection, sync, audience_types(connection))
    _create(connection, "revetl_duplicates", _DUPLICATES)
    acked = state.current_state(connection, has_pending)
    parameters = {"sync": sync.name}
    _create(connection, "revetl_changed", _CHANGED.fill(acked_state=acked),
            {**parameters, "removes": sync.mode == "mirror"})
    _create(connection, "revetl_diff", _DIFF.fill(acked_state=acked), parameters)
    counts = dict(run(_COUNTS))
    (rows, null_keys), = run(_ROWS)
    (duplicate_keys, duplicate_rows), = run(_DUPLICATED)
    members = rows - null_keys - duplicate_rows
    examples = tuple(row[0] for row in run(_EXAMPLES))
    for name in ("revetl_current", "revetl_duplicates", "revetl_changed"):
        connection.execute(drop_table(name))
    connection.drop_relation(AUDIENCE)
    previous = connection.scalar(_PREVIOUS.fill(acked_state=acked), parameters)
    sample_rows: dict[str, tuple[dict[str, Any], ...]] = {}
    for op in state.OPS:
        if counts.get(op):
            sample_rows[op] = tuple(
                {"key": key, "fields": json.loads(payload or before or "{}")}
                for key, payload, before in run(_SAMPLES, {"op": op, "limit": samples})
            )
    adds, changes, removed = counts.get("add", 0), counts.get("change", 0), counts.get("remove", 0)
    return Plan(
        sync=sync.name,
        audience=sync.audience,
        mode=sync.mode,
        planned_at=clock.now(),
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
        state_version=version,
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


def plan_sync(project: Project, sync: SyncConfig, connection: Connection | None = None) -> Plan:
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


def write_diff(connection: Connection, plan: Plan, path: Path) -> Plan:
    """Stream the plan's rows (`revetl_diff`, left by `make_plan` on `connection`) into a Parquet file at
    `path` (memory: one Arrow batch); returns the plan owning them as its `Diff`."""
    import pyarrow.parquet as pq  # loaded when there are rows to send

    query = Template(f"select {', '.join(DIFF_COLUMNS)} from revetl_diff")
    rows = 0
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        reader = connection.stream(query, rows=READ_ROWS)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with pq.ParquetWriter(temporary, reader.schema, compression="lz4") as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
            temporary.replace(path)
        finally:
            reader.close()
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StateError(f"could not write the plan to {path}: {exc.strerror or exc}") from exc
    except QueryError as exc:
        temporary.unlink(missing_ok=True)
        raise WarehouseError(f"could not read the plan out of the warehouse: {exc}") from exc
    return dataclasses.replace(plan, diff=Diff(path, rows))


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
