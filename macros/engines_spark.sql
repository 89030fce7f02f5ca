{#-
  Apache Spark's bodies of the per-engine macros (macros/engines.sql lists each construct and why it
  differs). Spark SQL as dbt-spark runs it: ANSI mode off (a failed cast is NULL, as DuckDB's
  try_cast), the session in UTC, tables written as Parquet.

  JSON: Spark 3.5 has no json_type. get_json_object returns a string unquoted and any other value as
  JSON text, so a string and the same text as a number look alike. Read through a wildcard
  (`$[*]...` over the text wrapped in `[...]`), it quotes strings as JSON does: that tells a string
  apart, and gives a value as JSON text for json_at and json_member_value. A key holding `']` cannot
  be named in a JSON path: such a trait key reads as no value on Spark.
-#}

{% macro spark__codepoint_order(expr) -%}
  {#- Spark compares strings byte by byte in UTF-8: code point order already. -#}
  {{ return(expr) }}
{%- endmacro %}

{% macro spark__type_double() -%}
  {{ return('double') }}
{%- endmacro %}

{% macro spark__hash64(expr, seed) -%}
  xxhash64({{ expr }}, {{ seed }})
{%- endmacro %}

{% macro spark__fast_unique_string_writes(reset) -%}
  {#- An empty hook is skipped: Spark writes Parquet with its own encodings. -#}
{%- endmacro %}

{% macro spark__trim_blank(expr) -%}
  {#- Java's regular expressions write a code point as \x{hex}; a raw literal keeps the backslashes. -#}
  {%- set blank = _character_class('\\x{', '}') -%}
  regexp_replace({{ expr }}, r'^{{ blank }}+|{{ blank }}+$', '')
{%- endmacro %}

{% macro spark__string_literal(text) -%}
  {#- Spark reads backslash escapes in string literals, and 'a''b' as the two literals 'a' 'b' joined. -#}
  {{- return("'" ~ (text | replace('\\', '\\\\') | replace("'", "\\'")) ~ "'") -}}
{%- endmacro %}

{% macro _spark_json_path(keys, wildcard=false) -%}
  {%- set path = ['$[*]' if wildcard else '$'] -%}
  {%- for key in keys -%}{%- do path.append("['" ~ key ~ "']") -%}{%- endfor -%}
  {{- return(spark__string_literal(path | join(''))) -}}
{%- endmacro %}

{% macro _spark_json_quoted(expr, path) -%}
  {#- The JSON text of the value at a wildcard path of expr wrapped in [ ]: strings keep their quotes. -#}
  get_json_object(concat('[', {{ expr }}, ']'), {{ path }})
{%- endmacro %}

{% macro spark__json_text(expr, keys) -%}
  case when {{ _spark_json_quoted(expr, _spark_json_path(keys, wildcard=true)) }} like '"%'
       then get_json_object({{ expr }}, {{ _spark_json_path(keys) }}) end
{%- endmacro %}

{% macro spark__json_scalar_text(expr, keys) -%}
  get_json_object({{ expr }}, {{ _spark_json_path(keys) }})
{%- endmacro %}

{% macro spark__json_at(expr, keys) -%}
  {{ _spark_json_quoted(expr, _spark_json_path(keys, wildcard=true)) }}
{%- endmacro %}

{% macro spark__json_members(expr, alias) -%}
  {#- Joined with LATERAL VIEW (the model writes no comma before it on Spark). -#}
  lateral view explode(json_object_keys({{ expr }})) {{ alias }} as key
{%- endmacro %}

{% macro spark__json_member_value(expr, alias) -%}
  {{ _spark_json_quoted(expr, "concat('$[*][\\'', " ~ alias ~ ".key, '\\']')") }}
{%- endmacro %}

{% macro spark__json_array_items(expr, alias) -%}
  {#- Joined with LATERAL VIEW; from_json keeps an element that is not a string as its JSON text. -#}
  lateral view explode(from_json({{ expr }}, 'array<string>')) {{ alias }} as item
{%- endmacro %}

{% macro spark__json_object_agg(key, value) -%}
  {#- Each key written as a JSON string (to_json of a one-element array, brackets cut off). -#}
  concat('{', concat_ws(',', collect_list(
      concat(substring(to_json(array({{ key }})), 2, length(to_json(array({{ key }}))) - 2), ':', {{ value }})
  )), '}')
{%- endmacro %}

{% macro spark__json_decimal(expr, keys) -%}
  {#- A failed cast is NULL with ANSI mode off, as DuckDB's try_cast. Left as Spark reads it: digits
      with `_` between them are no number here. -#}
  cast({{ spark__json_scalar_text(expr, keys) }} as decimal(27, 9))
{%- endmacro %}

{% macro spark__arg_max_by(value, keys, where, direction) -%}
  {#- max_by/min_by over a struct key (compared field by field), the value's NULLs left out. -#}
  {%- set key = keys[0] if keys | length == 1 else 'struct(' ~ (keys | join(', ')) ~ ')' -%}
  {{ direction }}_by({{ value }}, {{ key }}) filter (where ({{ value }}) is not null{{ ' and (' ~ where ~ ')' if where }})
{%- endmacro %}

{% macro spark__sorted_distinct_list(value) -%}
  case when count({{ value }}) > 0 then array_sort(collect_set({{ value }})) end
{%- endmacro %}

{% macro spark__empty_list(element_type) -%}
  cast(array() as array<{{ element_type }}>)
{%- endmacro %}

{% macro spark__cc_priority(expr, seed) -%}
  {#- xxhash64() is a signed 64-bit integer: 31 of its bits (Spark 3.5 has no << >> operators). -#}
  (shiftleft(shiftright(xxhash64({{ expr }}, {{ seed }}), 33) & 2147483647, 32) | {{ expr }})
{%- endmacro %}

{% macro spark__create_or_replace_table(relation, query) -%}
  drop table if exists {{ relation }};
  create table {{ relation }} using parquet as {{ query }}
{%- endmacro %}

{% macro spark__work_table(identifier) -%}
  {#- Connected components' work tables are Parquet tables in the model's schema, dropped as soon as
      the next round has read them. Cached temporary views (CACHE TABLE ... AS) were tried first: each
      names the last round's view, so a round's plan holds every earlier round's, twice or three times
      over, and the driver ran out of memory printing the plan at round 6 of 300 users' events. A
      table read back has no past. -#}
  {{- return(adapter.quote(this.schema) ~ '.' ~ adapter.quote(identifier)) -}}
{%- endmacro %}

{% macro spark__create_work_table(name) -%}
  {{- return('create table ' ~ name ~ ' using parquet as') -}}
{%- endmacro %}

{% macro spark__drop_work_table(name, if_exists) -%}
  {{- return('drop table ' ~ ('if exists ' if if_exists else '') ~ name) -}}
{%- endmacro %}

{% macro spark__work_table_names(prefix) -%}
  {%- set found = run_query("show tables in " ~ adapter.quote(this.schema) ~ " like '" ~ prefix ~ "*'") -%}
  {%- set names = [] -%}
  {%- for row in found.rows -%}
    {#- <model>__cc_stats is kept after the build: not a work table. -#}
    {%- if not row['isTemporary'] and row['tableName'][prefix | length:] != 'stats' -%}
      {%- do names.append(row['tableName']) -%}
    {%- endif -%}
  {%- endfor -%}
  {{- return(names) -}}
{%- endmacro %}

{% macro spark__run_statements(statements) -%}
  {#- Spark runs one statement at a time. -#}
  {%- set last = namespace(result=none) -%}
  {%- for statement in statements.split(';') -%}
    {%- if statement.strip() -%}{%- set last.result = run_query(statement) -%}{%- endif -%}
  {%- endfor -%}
  {{- return(last.result) -}}
{%- endmacro %}

{% macro spark__list_of(element_type) -%}
  {{- return('array<' ~ element_type ~ '>') -}}
{%- endmacro %}

{% macro spark__row_id(columns) -%}
  {#- Spark numbers rows only in an order: the columns', NULLs first (connected components needs ids
      below 2^32, which monotonically_increasing_id() is not). -#}
  {{- return('row_number() over (order by ' ~ (columns | join(', ')) ~ ')') -}}
{%- endmacro %}
