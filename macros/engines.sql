{#-
  One SQL, many engines (DESIGN 8; STYLE 10). The models are written once; every construct whose
  SQL differs between engines is a small macro named by what it does, dispatched per adapter with
  `adapter.dispatch(name, 'revetl')`: a `duckdb__`, a `postgres__` and a `spark__` body (Spark's in
  engines_spark.sql, with its reasons), and a `default__` where DuckDB and PostgreSQL agree or dbt's
  cross-database macros already say it. The public models give the same rows on every engine
  (tests/test_dbt_postgres.py and tests/test_spark.py build the same events on each and compare every
  row).

  Constructs that needed a body per engine, and why:
    - landed_events: DuckDB reads the Parquet files in place (read_parquet as dbt-duckdb's
      external_location, models/staging/landing/_landing__sources.yml); PostgreSQL reads the table
      `landing.events` that `revetl load` fills; Spark reads the directory as a Parquet source.
    - utc_timestamp, utc_now: a time as UTC without a zone (timezone('UTC', ...)); Spark's TIMESTAMP
      is already an instant shown in the session's UTC.
    - row_id: row_number() over () where the engine numbers rows in no order; Spark wants an order.
    - string_literal: quotes doubled; Spark reads backslash escapes and joins 'a''b' as 'a' 'b'.
    - list_of: `T[]`; Spark's `array<T>`.
    - create_work_table, drop_work_table, work_table_names, run_statements (connected components):
      temporary tables, several statements in one round trip; on Spark, Parquet tables one statement
      at a time.
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
    - work_table, work_table_names (connected components' per-round tables): DuckDB's temporary
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

{% macro landed_events() -%}
  {#- The landed events as a FROM item: the source `landing.events` (DuckDB: the files in place, through
      its external_location; PostgreSQL: the table `revetl load` fills). -#}
  {{ return(adapter.dispatch('landed_events', 'revetl')()) }}
{%- endmacro %}

{% macro default__landed_events() -%}
  {{ return(source('landing', 'events')) }}
{%- endmacro %}

{% macro spark__landed_events() -%}
  {#- Spark reads the files in place: the landing directory as a Parquet source (Hive partitions found
      by name; the `.tmp` files of a write in progress are hidden files, which Spark skips), with each
      row's file and row number from the file's metadata. The source stays in the lineage. -#}
  {%- do source('landing', 'events') -%}
  (select *, _metadata.file_path as filename, _metadata.row_index as file_row_number
   from parquet.`{{ var('landing_dir') | replace('`', '``') }}`)
{%- endmacro %}

{% macro quarantined() -%}
  {#- The events a tracking plan blocked, as a FROM item, when there are files (var `quarantine_files`):
      the source `quarantine.events` (DuckDB: the files in place); Spark reads the directory in place as
      it reads the landing directory. -#}
  {{ return(adapter.dispatch('quarantined', 'revetl')()) }}
{%- endmacro %}

{% macro default__quarantined() -%}
  {{ return(source('quarantine', 'events')) }}
{%- endmacro %}

{% macro spark__quarantined() -%}
  {%- do source('quarantine', 'events') -%}
  parquet.`{{ var('quarantine_dir') | replace('`', '``') }}`
{%- endmacro %}

{% macro utc_timestamp(expr) -%}
  {#- A landed time (with a time zone) as the UTC time. -#}
  {{ return(adapter.dispatch('utc_timestamp', 'revetl')(expr)) }}
{%- endmacro %}

{% macro default__utc_timestamp(expr) -%}
  timezone('UTC', cast({{ expr }} as timestamptz))
{%- endmacro %}

{% macro spark__utc_timestamp(expr) -%}
  {#- Spark's TIMESTAMP is an instant, shown in the session's time zone: UTC (warehouse/spark.py). -#}
  cast({{ expr }} as timestamp)
{%- endmacro %}

{% macro row_id(columns) -%}
  {#- A number 1..n for each row of the query, unique; `columns` (a list) tell the rows apart. -#}
  {{- return(adapter.dispatch('row_id', 'revetl')(columns)) -}}
{%- endmacro %}

{% macro default__row_id(columns) -%}
  {{- return('row_number() over ()') -}}
{%- endmacro %}

{% macro string_literal(text) -%}
  {#- A SQL string literal of text. -#}
  {{- return(adapter.dispatch('string_literal', 'revetl')(text)) -}}
{%- endmacro %}

{% macro default__string_literal(text) -%}
  {{- return("'" ~ (text | replace("'", "''")) ~ "'") -}}
{%- endmacro %}

{% macro utc_now() -%}
  {#- Now, as a UTC TIMESTAMP. -#}
  {{ return(adapter.dispatch('utc_now', 'revetl')()) }}
{%- endmacro %}

{% macro default__utc_now() -%}
  cast(timezone('UTC', current_timestamp) as timestamp)
{%- endmacro %}

{% macro spark__utc_now() -%}
  current_timestamp()
{%- endmacro %}

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

{% macro create_work_table(name) -%}
  {#- The start of a statement making the work table `name` from the query that follows it. -#}
  {{- return(adapter.dispatch('create_work_table', 'revetl')(name)) -}}
{%- endmacro %}

{% macro default__create_work_table(name) -%}
  {{- return('create temporary table ' ~ name ~ ' as') -}}
{%- endmacro %}

{% macro drop_work_table(name, if_exists=false) -%}
  {{- return(adapter.dispatch('drop_work_table', 'revetl')(name, if_exists)) -}}
{%- endmacro %}

{% macro default__drop_work_table(name, if_exists) -%}
  {{- return('drop table ' ~ ('if exists ' if if_exists else '') ~ name) -}}
{%- endmacro %}

{% macro work_table_names(prefix) -%}
  {#- The names of this connection's work tables that start with prefix. -#}
  {{- return(adapter.dispatch('work_table_names', 'revetl')(prefix)) -}}
{%- endmacro %}

{% macro duckdb__work_table_names(prefix) -%}
  {%- set found = run_query("select table_name from duckdb_tables() where temporary and starts_with(table_name, '"
                            ~ prefix ~ "')") -%}
  {{- return(found.columns[0].values() | list) -}}
{%- endmacro %}

{% macro postgres__work_table_names(prefix) -%}
  {%- set found = run_query("select relname from pg_class where relnamespace = pg_my_temp_schema() and relkind = 'r' "
                            ~ "and starts_with(relname, '" ~ prefix ~ "')") -%}
  {{- return(found.columns[0].values() | list) -}}
{%- endmacro %}

{% macro run_statements(statements) -%}
  {#- Run `;`-separated statements (none holding a `;` of its own); the last one's result. -#}
  {{- return(adapter.dispatch('run_statements', 'revetl')(statements)) -}}
{%- endmacro %}

{% macro default__run_statements(statements) -%}
  {{- return(run_query(statements)) -}}
{%- endmacro %}

{% macro list_of(element_type) -%}
  {#- The type of a list of element_type. -#}
  {{- return(adapter.dispatch('list_of', 'revetl')(element_type)) -}}
{%- endmacro %}

{% macro default__list_of(element_type) -%}
  {{- return(element_type ~ '[]') -}}
{%- endmacro %}
