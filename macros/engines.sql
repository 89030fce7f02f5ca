{#-
  One SQL, many engines (DESIGN 8; STYLE 10). The models are written once; every construct whose
  SQL differs between engines is a small macro named by what it does, dispatched per adapter with
  `adapter.dispatch(name, 'revetl')`: a `duckdb__` and a `postgres__` body, and a `default__` where
  dbt's cross-database macros already say it (a later engine adds its own `<adapter>__` bodies).
  The public models give the same rows on both engines (tests/test_dbt_postgres.py builds the same
  events on each and compares every row).

  Constructs that needed a body per engine, and why:
    - reading the landed events (models/staging/landing/_landing__sources.yml, not a macro): DuckDB
      reads the Parquet files in place (read_parquet as dbt-duckdb's external_location); PostgreSQL
      reads the table `landing.events` that `revetl load` fills.
    - codepoint_order: text compared code point by code point (the order DuckDB always uses).
      PostgreSQL orders text by the database's collation, where `a-b` may sort after `ab`, which
      would change which identifier names a profile, which copy of a message is kept and how ties
      break; `collate "C"` there.
    - type_double: DuckDB's DOUBLE is `double precision` on PostgreSQL (dbt's type_float is FLOAT,
      4 bytes on DuckDB).
    - hash64: a 64-bit hash of text: DuckDB's hash(), PostgreSQL's hashtextextended().
    - fast_unique_string_writes: DuckDB's `set disabled_compression_methods` around identity_graph;
      nothing on PostgreSQL.
    - create_or_replace_table: DuckDB's `create or replace table`; drop then create on PostgreSQL.
    - work_table, work_tables_named (connected components' per-round tables): DuckDB's temporary
      catalog `temp.main` and duckdb_tables(); PostgreSQL's `pg_temp` schema and pg_class.
    - cc_priority (connected_components.sql): DuckDB's hash() is unsigned, PostgreSQL's
      hashint8extended() signed; both keep 31 bits.
    - trim_blank (identity.sql): the same character set as an RE2 class (DuckDB: \x{...}) and a
      PostgreSQL ARE class (\uXXXX).
    - json_text, json_scalar_text, json_at, json_members, json_member_value, json_object_agg
      (engines_json.sql): DuckDB's json_extract / json_extract_string / json_type / json_keys /
      json_group_object with '$."key"' paths; PostgreSQL's json operators -> ->> and json_typeof,
      json_each, json_object_agg. PostgreSQL's json functions also fail on a \u0000 escape anywhere
      in the object (its text cannot hold U+0000): there each one is read as U+FFFD, so one such
      event does not fail the build (DuckDB keeps the character).
    - json_array_items (engines_json.sql): one row per element of a JSON array (the `violations`
      model): DuckDB's unnest(json_extract(x, '$[*]')); PostgreSQL's json_array_elements.
    - json_decimal (engines_json.sql): a property as DECIMAL(27, 9) or NULL. DuckDB's try_cast has
      no PostgreSQL counterpart (a plain cast fails the build on the first "abc"); there the same
      grammar is a regular expression, and a JSON number goes through a double first, as DuckDB
      reads it. One difference is left: a number written in more than 1,000 characters is no value
      on PostgreSQL.
    - arg_max_by, arg_min_by (engines_aggregates.sql): DuckDB's arg_max/arg_min with a tuple key;
      array_agg(... order by ...)[1] on PostgreSQL, which has neither.
    - sorted_distinct_list (engines_aggregates.sql): DuckDB's list_sort(list(distinct ...));
      array_agg(distinct ... order by ...) on PostgreSQL.
    - empty_list (engines_aggregates.sql): dbt's array_construct([]) where it works (PostgreSQL);
      DuckDB's `[]` literal.

  Replaced by one portable form instead (no per-engine body):
    - `qualify` (events' later copies, most_frequent traits): a row_number() in a subquery.
    - `select * exclude (profile_id)` of trait models: their columns listed from the adapter.
    - `"timestamp"` (a reserved word): adapter.quote('timestamp') in every model.
    - a trait's `where` (traits.yml) is DuckDB SQL, transpiled by sqlglot for the target
      (revetl/warehouse/traits.py).

  Left as each engine does it (no landed event revetl writes shows a difference):
    - lower() of letters beyond ASCII (emails): PostgreSQL follows the database's LC_CTYPE (under
      `C` it lowers ASCII only); DuckDB lowers every Unicode letter.
    - a JSON object with one key twice: DuckDB reads the first value, PostgreSQL the last
      (revetl ingest, generate and collect never write one).
    - a JSON number read as text (`as: string`): PostgreSQL keeps it as written, DuckDB writes the
      double it read (`1E+2` vs `100.0`); numbers as Python and JavaScript write them agree.
    - U+0000 in a JSON string: U+FFFD on PostgreSQL (above).
-#}

{% macro codepoint_order(expr) -%}
  {{ return(adapter.dispatch('codepoint_order', 'revetl')(expr)) }}
{%- endmacro %}

{% macro duckdb__codepoint_order(expr) -%}
  {{ return(expr) }}
{%- endmacro %}

{% macro postgres__codepoint_order(expr) -%}
  {{ return('(' ~ expr ~ ') collate "C"') }}
{%- endmacro %}

{% macro type_double() -%}
  {{ return(adapter.dispatch('type_double', 'revetl')()) }}
{%- endmacro %}

{% macro duckdb__type_double() -%}
  {{ return('double') }}
{%- endmacro %}

{% macro postgres__type_double() -%}
  {{ return('double precision') }}
{%- endmacro %}

{% macro hash64(expr, seed) -%}
  {{ return(adapter.dispatch('hash64', 'revetl')(expr, seed)) }}
{%- endmacro %}

{% macro duckdb__hash64(expr, seed) -%}
  hash({{ expr }}, {{ seed }})
{%- endmacro %}

{% macro postgres__hash64(expr, seed) -%}
  {#- expr is text (DuckDB hashes any type). -#}
  hashtextextended({{ expr }}, {{ seed }})
{%- endmacro %}

{% macro fast_unique_string_writes(reset=false) -%}
  {{ return(adapter.dispatch('fast_unique_string_writes', 'revetl')(reset)) }}
{%- endmacro %}

{% macro duckdb__fast_unique_string_writes(reset) -%}
  {#- DuckDB, as a model's pre-hook and (reset=true) post-hook: its combined dictionary + FSST string
      compression spends more time than it saves on a column of distinct hashes (profile_id: md5
      hex), about half of writing identity_graph at 10M identifiers. Its other compressions stay on.
      DuckDB only has this setting database-wide, so a model built beside it in the same run also
      skips that one method until the post-hook; it changes how strings are stored, never what. -#}
  {%- if reset -%}
    reset disabled_compression_methods
  {%- else -%}
    set disabled_compression_methods = 'dict_fsst'
  {%- endif -%}
{%- endmacro %}

{% macro postgres__fast_unique_string_writes(reset) -%}
  {#- An empty hook is skipped: PostgreSQL has no such setting. -#}
{%- endmacro %}

{% macro create_or_replace_table(relation, query) -%}
  {{ return(adapter.dispatch('create_or_replace_table', 'revetl')(relation, query)) }}
{%- endmacro %}

{% macro duckdb__create_or_replace_table(relation, query) -%}
  create or replace table {{ relation }} as {{ query }}
{%- endmacro %}

{% macro postgres__create_or_replace_table(relation, query) -%}
  drop table if exists {{ relation }};
  create table {{ relation }} as {{ query }}
{%- endmacro %}

{% macro work_table(identifier) -%}
  {#- A temporary table of this connection, qualified so that a drop can never reach a permanent
      table of the same name. -#}
  {{- return(adapter.dispatch('work_table', 'revetl')(identifier)) -}}
{%- endmacro %}

{% macro duckdb__work_table(identifier) -%}
  {{- return('temp.main.' ~ adapter.quote(identifier)) -}}
{%- endmacro %}

{% macro postgres__work_table(identifier) -%}
  {{- return('pg_temp.' ~ adapter.quote(identifier)) -}}
{%- endmacro %}

{% macro work_tables_named(prefix) -%}
  {#- A query of the names of this connection's temporary tables that start with prefix. -#}
  {{- return(adapter.dispatch('work_tables_named', 'revetl')(prefix)) -}}
{%- endmacro %}

{% macro duckdb__work_tables_named(prefix) -%}
  select table_name from duckdb_tables()
  where temporary and starts_with(table_name, '{{ prefix }}')
{%- endmacro %}

{% macro postgres__work_tables_named(prefix) -%}
  select relname from pg_class
  where relnamespace = pg_my_temp_schema() and relkind = 'r' and starts_with(relname, '{{ prefix }}')
{%- endmacro %}
