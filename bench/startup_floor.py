"""What a sync with nothing to send cannot avoid, in one process (bench/RESULTS.md, "Start-up", the floor).

Run by hand, timed from outside, alternating with the real no-op sync of startup_bench.py's project:
    python bench/startup_floor.py PROJECT WAREHOUSE LEVEL
LEVEL 1: rich (a table printed); 2: + pydantic (one strict model validated); 3: + PyYAML (the project's four
files read) and the destinations' entry-point scan; 4: + DuckDB's extension (the warehouse opened, one query of
the sync state, closed). Give it a copy of the warehouse.
"""
import sys
from pathlib import Path
root, warehouse, level = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
from rich.console import Console
from rich.table import Table
if level >= 2:
    from pydantic import BaseModel, ConfigDict
    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        landing_dir: str = "data/events"
    Settings.model_validate({})
if level >= 3:
    import yaml
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "syncs/a.yml"):
        yaml.load((root / name).read_text(), Loader=yaml.CSafeLoader)
    from importlib.metadata import entry_points
    entry_points(group="revetl.destinations")
if level >= 4:
    import _duckdb
    connection = _duckdb.connect(warehouse)
    connection.execute("select count(*) from revetl_state.acknowledged").fetchall()
    connection.close()
table = Table(title="sync summary")
table.add_column("sync")
table.add_row("a")
Console().print(table)
