"""SQL text kept between runs (revetl/warehouse/rendered.py), and what a cron line's run with nothing to send
loads because of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest
import yaml
from wh import REPO, audience_project, replace_table

from revetl.emulators import running
from revetl.warehouse import rendered
from revetl.warehouse.connection import _env_var, render_profiles
from revetl.warehouse import dialect
from revetl.warehouse.dialect import Template

KEY = "rendered-test-braze-key"


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("REVETL_CACHE_DIR", str(directory))
    return directory


def never() -> str:
    raise AssertionError("rendered again: the store should have had it")


def test_a_text_rendered_by_one_process_is_read_back_by_the_next(store_dir):
    first = rendered._Store()
    assert first.get("template", "duckdb", ("select 1",), lambda: "SELECT 1") == "SELECT 1"
    first.write()
    (file,) = store_dir.glob("sql-*.json")
    assert list(json.loads(file.read_text()).values()) == ["SELECT 1"]
    assert file.stat().st_mode & 0o777 == 0o600  # readable by its user alone
    second = rendered._Store()
    assert second.get("template", "duckdb", ("select 1",), never) == "SELECT 1"
    # other parts, or another dialect, are another text
    assert second.get("template", "postgres", ("select 1",), lambda: "pg") == "pg"
    assert second.get("template", "duckdb", ("select 2",), lambda: "two") == "two"


def test_another_code_starts_an_empty_store(store_dir, monkeypatch):
    first = rendered._Store()
    first.get("template", "duckdb", ("x",), lambda: "old text")
    first.write()
    monkeypatch.setattr(rendered, "_fingerprint", lambda: "edited-code")
    assert rendered._Store().get("template", "duckdb", ("x",), lambda: "new text") == "new text"


def test_the_fingerprint_follows_an_edit_of_the_code(tmp_path):
    package = tmp_path / "revetl"
    (package / "sync").mkdir(parents=True)
    module = package / "sync" / "plan.py"
    module.write_text("x = 1\n")
    before = rendered._fingerprint(package)
    assert rendered._fingerprint(package) == before
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert rendered._fingerprint(package) != before
    (package / "new.py").write_text("")
    assert len({before, rendered._fingerprint(package)}) == 2


def test_a_failed_render_stores_nothing(store_dir):
    store = rendered._Store()

    def broken() -> str:
        raise ValueError("bad audience")

    with pytest.raises(ValueError):
        store.get("audience", "duckdb", ("a",), broken)
    store.write()
    assert not list(store_dir.glob("sql-*.json"))


def test_an_empty_cache_dir_turns_the_store_off(monkeypatch, tmp_path):
    monkeypatch.setenv("REVETL_CACHE_DIR", "")
    store, calls = rendered._Store(), []
    for _ in range(2):
        store.get("template", "duckdb", ("x",), lambda: calls.append(1) or "text")
    store.write()
    assert len(calls) == 2 and store.path() is None


def test_a_store_that_cannot_be_written_or_read_fails_nothing(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("REVETL_CACHE_DIR", str(blocked / "cache"))
    store = rendered._Store()
    assert store.get("template", "duckdb", ("x",), lambda: "text") == "text"
    store.write()  # cannot create the directory: ignored
    directory = tmp_path / "cache"
    monkeypatch.setenv("REVETL_CACHE_DIR", str(directory))
    directory.mkdir()
    (directory / f"sql-{rendered._fingerprint()}.json").write_text("{broken json")
    assert rendered._Store().get("template", "duckdb", ("x",), lambda: "again") == "again"


def test_stores_of_other_code_untouched_for_a_week_are_deleted(store_dir):
    store_dir.mkdir()
    old, recent = store_dir / "sql-old.json", store_dir / "sql-recent.json"
    for file in (old, recent):
        file.write_text("{}")
    week_ago = time.time() - rendered.STALE_SECONDS - 60
    os.utime(old, (week_ago, week_ago))
    store = rendered._Store()
    store.get("template", "duckdb", ("x",), lambda: "text")
    store.write()
    assert not old.exists() and recent.exists() and store.path().exists()


def test_a_template_read_from_the_store_is_the_text_sqlglot_renders(store_dir, monkeypatch):
    monkeypatch.setattr(rendered, "_STORE", rendered._Store())  # this test's store, empty
    monkeypatch.setattr(dialect, "remember", rendered.remember)
    dialect._rendered.cache_clear()
    template = Template("select revetl_hash64(key) as h from revetl_state.acknowledged where sync = $sync").fill()
    fresh = template.expression().sql(dialect="postgres", identify=True)
    assert "HASHTEXTEXTENDED" not in fresh  # the engine function: `Template.sql` puts it in
    kept = template.sql("postgres")
    assert "HASHTEXTEXTENDED" in kept and '"revetl_state"."acknowledged"' in kept
    rendered._STORE.write()
    assert rendered._Store().get("template", "postgres", (template, True), never) == kept


@pytest.mark.parametrize("environ", [
    {},
    {"REVETL_WAREHOUSE": "/data/w h.duckdb", "PGPORT": "6543", "PGPASSWORD": "p@ss'word"},
    {"PGPORT": "not-a-number", "PGHOST": "{{ not jinja }}"},
    {"PGPORT": "5433.0"},
])
def test_profiles_rendered_without_jinja_are_jinja_rendering(environ, monkeypatch):
    for name in ("REVETL_WAREHOUSE", "PGPORT", "PGPASSWORD", "PGHOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    text = (REPO / "profiles.yml").read_text()
    assert yaml.safe_load(render_profiles(text)) == yaml.safe_load(jinja2.Template(text).render(env_var=_env_var))


def test_profiles_with_other_jinja_are_rendered_by_jinja(monkeypatch):
    monkeypatch.setenv("PGUSER", "ann")
    text = "a: \"{{ env_var('PGUSER') | upper }}\"\n{% if true %}b: 1{% endif %}\n"
    assert yaml.safe_load(render_profiles(text)) == {"a": "ANN", "b": 1}


AUDIENCE = """-- description: people
-- key: user_id

select user_id, email from {{ ref('members') }}
"""

LOADED = """
import runpy, sys
sys.argv = ["revetl", "--project-dir", sys.argv[1], "sync", "people"]
try:
    runpy.run_module("revetl", run_name="__main__")
except SystemExit as exit:
    code = exit.code
print({"code": code, "loaded": sorted(m for m in ("sqlglot", "jinja2", "asyncio", "httpx", "pyarrow.parquet")
                                      if m in sys.modules)})
"""


@pytest.mark.slow
def test_a_sync_with_nothing_to_send_loads_neither_sqlglot_nor_jinja_once_the_store_is_warm(
        tmp_path, monkeypatch, store_dir):
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    project = audience_project(tmp_path, monkeypatch, {"people": AUDIENCE}, tables=("members",))
    replace_table(project, "members", "select 'u' || i as user_id, 'p' || i || '@example.com' as email "
                                      "from generate_series(0, 9) as t(i)")

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", LOADED, str(project.root)], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200"}, timeout=120)
        assert done.returncode == 0, done.stderr
        return eval(done.stdout.strip().splitlines()[-1])  # the dict printed last

    with running("braze", {"api_key": KEY}) as url:
        (project.syncs_dir / "people.yml").write_text(yaml.safe_dump({
            "audience": "people", "destination": {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}"},
            "identity": {"from": "user_id", "to": "external_id"}, "fields": {"email": "email"},
        }))
        sent = run()  # a cold store, ten adds to send
        assert sent["code"] == 0 and {"sqlglot", "jinja2", "asyncio", "httpx"} <= set(sent["loaded"])
        idle = run()
        assert idle == {"code": 0, "loaded": []}, "a run with nothing to send loaded more than it needs"
        (project.audiences_dir / "people.sql").write_text(AUDIENCE.replace("email from", "email, 1 as one from"))
        edited = run()  # an edited audience is checked again
        assert edited["code"] == 0 and {"sqlglot", "jinja2"} <= set(edited["loaded"])


def test_the_relations_of_dbts_manifest_follow_each_new_manifest(tmp_path):
    """Kept by the manifest's size and time: a build that rewrites it (here to the same size) is read again."""
    from revetl.warehouse.relations import _built

    manifest = tmp_path / "manifest.json"

    def write(alias: str, when_ns: int) -> None:
        nodes = {"model.p.m": {"resource_type": "model", "name": "m", "schema": "s", "alias": alias},
                 "test.p.t": {"resource_type": "test", "name": "t"}}
        manifest.write_text(json.dumps({"nodes": nodes}))
        os.utime(manifest, ns=(when_ns, when_ns))

    write("a1", 1_700_000_000_000_000_001)
    assert _built(manifest) == {"m": ["s", "a1"]}
    write("a2", 1_700_000_000_000_000_002)
    assert _built(manifest) == {"m": ["s", "a2"]}
    manifest.write_text("{not json")
    assert _built(manifest) == {}
    manifest.unlink()
    assert _built(manifest) == {}
