"""The child processes of spark_bench.py: each script runs with `python -c` in a process of its own, so that the
launcher never holds a JVM, the Spark metastore's lock, or a million rows (its children's peak RSS stays theirs).
"""

from __future__ import annotations

from warehouse_bench import AUDIENCE

# argv: parquet path, count, churn (0/1). The plan's audience (warehouse_bench.AUDIENCE) as a Parquet file, which
# a Spark session reads into a table (pyspark 3.5 makes a DataFrame from Arrow only through pandas).
MEMBERS_FILE = AUDIENCE + """
import sys
import pyarrow.parquet as pq
pq.write_table(members(int(sys.argv[2]), churn=sys.argv[3] == "1"), sys.argv[1])
"""

# argv: project root, JSON list of operations. One Spark session (revetl's own, from the project's `spark`
# output) runs them in order; prints {"session_s": start-up to the first answer, "results": [...]}.
#   {"op": "sql", "sql": ...}                         the rows, as lists
#   {"op": "from_parquet", "table": ..., "path": ...}  the Parquet file(s) as the Parquet table `table`
#   {"op": "empty", "table": ..., "columns": ...}     an empty table ("a string, b string")
#   {"op": "to_parquet", "sql": ..., "path": ...}      a query's rows written as Parquet
#   {"op": "acknowledge", "sync": ..., "count": ...}  the state seeded as warehouse_bench.PREPARE seeds it:
#       the sync's first plan (`count` adds) acknowledged in the state's DuckDB file (SparkState)
SPARK = """
import json, sys, time
from pathlib import Path
started = time.monotonic()
from revetl.config import load_project, load_sync
from revetl.warehouse.connection import connect, spark_session, target_config
from revetl.warehouse.spark import stop_session

ACKNOWLEDGE = '''insert into revetl_state.acknowledged (sync, key, row_hash, payload, run_id, acknowledged_at)
    select $sync, key, row_hash, payload::json, 'setup', now() from revetl_diff'''
project = load_project(Path(sys.argv[1]), "spark")
spark = spark_session(project)
spark.sql("select 1").collect()
out = {"session_s": time.monotonic() - started, "results": []}
schema = target_config(project).get("schema") or "default"
spark.sql(f"create schema if not exists {schema}")
spark.catalog.setCurrentDatabase(schema)

def save(frame, table):
    frame.write.mode("overwrite").format("parquet").saveAsTable(f"{schema}.{table}")

for op in json.loads(sys.argv[2]):
    began = time.monotonic()
    if op["op"] == "sql":
        out["results"].append([list(row) for row in spark.sql(op["sql"]).collect()])
    elif op["op"] == "from_parquet":
        save(spark.read.parquet(op["path"]), op["table"])
    elif op["op"] == "empty":
        save(spark.createDataFrame([], op["columns"]), op["table"])
    elif op["op"] == "to_parquet":
        spark.sql(op["sql"]).write.mode("overwrite").parquet(op["path"])
    elif op["op"] == "acknowledge":
        from revetl.sync import state
        from revetl.sync.plan import plan_sync
        from revetl.warehouse.dialect import Template
        with connect(project) as connection:
            state.migrate(connection)
            plan = plan_sync(project, load_sync(project, op["sync"]), connection)
            assert plan.adds == op["count"], plan
            with state.transaction(connection, changes=op["sync"]):
                connection.execute(Template(ACKNOWLEDGE), {"sync": op["sync"]})
    print(json.dumps({"op": op["op"], "seconds": round(time.monotonic() - began, 1)}), file=sys.stderr, flush=True)
stop_session()
print(json.dumps(out, default=str))
"""

# argv: project root, target (duckdb | postgres), the graph's directory. int_identity_nodes/_edges from its Parquet
# files and an empty identity_conflicts (identity_graph's tests read it), through revetl's own connection.
GRAPH = """
import sys
from pathlib import Path
import pyarrow as pa
import pyarrow.parquet as pq
from revetl.config import load_project
from revetl.warehouse.connection import connect
project = load_project(Path(sys.argv[1]), sys.argv[2])
base = Path(sys.argv[3])
conflicts = pa.table({name: pa.array([], pa.string()) for name in ("identifier_type", "identifier_value", "reason")})
with connect(project) as connection:
    for name in ("int_identity_nodes", "int_identity_edges", "identity_conflicts"):
        connection.execute(f"drop table if exists {name}")
        connection.ingest(name, conflicts if name == "identity_conflicts" else pq.read_table(base / f"{name}.parquet"),
                          temporary=False)
    if sys.argv[2] == "postgres":  # as autovacuum would have by the time a build runs
        connection.execute("analyze")
"""

# argv: project root, target (duckdb | postgres), Parquet path. identity_graph written as Parquet; prints the
# connected components' record [rounds, seconds].
EXPORT_GRAPH = """
import json, sys
from pathlib import Path
import pyarrow.parquet as pq
from revetl.config import load_project
from revetl.warehouse.connection import connect
project = load_project(Path(sys.argv[1]), sys.argv[2])
with connect(project, read_only=True) as connection:
    graph = connection.stream("select identifier_type, identifier_value, profile_id from identity_graph")
    pq.write_table(graph.read_all(), sys.argv[3])
    rounds, seconds = connection.execute("select rounds, seconds from identity_graph__cc_stats").fetchone()
print(json.dumps([int(rounds), float(seconds)]))
"""

# argv: project root, target. (events, profiles) of a build.
COUNTS_SQL = "select (select count(*) from events), (select count(*) from profiles)"
COUNTS = f"""
import json, sys
from pathlib import Path
from revetl.config import load_project
from revetl.warehouse.connection import connect
with connect(load_project(Path(sys.argv[1]), sys.argv[2]), read_only=True) as connection:
    print(json.dumps(list(connection.execute("{COUNTS_SQL}").fetchone())))
"""


def measure_plan(script: str, engine: str, sync: str = "bench") -> str:
    """warehouse_bench.MEASURE_PLAN for the sync `sync`; on Spark with the session started (and its time kept)
    before the clock starts: make_plan's own seconds, the JVM's start-up apart."""
    anchor, named = "started = time.monotonic()\nplan = make_plan(", 'load_sync(project, "bench")'
    assert anchor in script and named in script, "warehouse_bench.MEASURE_PLAN changed: update spark_scripts.measure_plan"
    script = script.replace(named, f"load_sync(project, {sync!r})")
    if engine != "spark":
        return script
    warm = ("began = time.monotonic()\nconnection.source.execute('select 1')\nsession_s = time.monotonic() - began\n")
    return script.replace(anchor, warm + anchor).replace('"removes": plan.removes}',
                                                         '"removes": plan.removes, "session_s": session_s}')


# argv: a directory of one directory of Parquet files per engine, each its identity_graph. Per engine, its rows
# against DuckDB's, joined on the identifier: {"rows", "same_id" (rows whose profile_id is DuckDB's), "pairs",
# "ours", "theirs" (distinct (profile, profile) pairs, distinct profiles on each side), "duckdb_rows"}. The
# partitions are the same up to renaming when the last three are equal and every identifier is on both sides.
COMPARE = """
import json, sys, duckdb
from pathlib import Path
base = Path(sys.argv[1])
found, connection = {}, duckdb.connect()
for engine in sorted(path.name for path in base.iterdir()):
    found[engine] = dict(zip(("rows", "same_id", "pairs", "ours", "theirs", "duckdb_rows"), connection.execute(f'''
        with joined as (
            select d.profile_id as a, o.profile_id as b
            from read_parquet('{base}/duckdb/*.parquet') d
            join read_parquet('{base}/{engine}/*.parquet') o using (identifier_type, identifier_value))
        select count(*), count(*) filter (where a = b), (select count(*) from (select distinct a, b from joined)),
               count(distinct a), count(distinct b), (select count(*) from read_parquet('{base}/duckdb/*.parquet'))
        from joined''').fetchone()))
print(json.dumps(found))
"""

# argv: the directory build_bench.synthetic_graph should use; nodes; edges. The random graph (seeded), its tables
# written as <table>.parquet beside its warehouse file.
SYNTHETIC = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import build_bench
import duckdb
build_bench.WORK = Path(sys.argv[2])
base = build_bench.synthetic_graph(int(sys.argv[3]), int(sys.argv[4]))
with duckdb.connect(str(base / "warehouse.duckdb"), read_only=True) as connection:
    for table in ("int_identity_nodes", "int_identity_edges"):
        connection.execute(f"copy {table} to '{base}/{table}.parquet' (format parquet)")
print(base)
"""
