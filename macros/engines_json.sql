{#-
  JSON text columns (properties, traits, context: DESIGN 2), read per engine (macros/engines.sql
  lists why). `keys` is a list of object keys, a path from the top; `expr` is JSON text (or JSON).
-#}

{% macro _duckdb_json_path(keys) -%}
  {%- set path = [] -%}
  {%- for key in keys -%}{%- do path.append('."' ~ (key | replace('"', '\\"') | replace("'", "''")) ~ '"') -%}{%- endfor -%}
  {{- return("'$" ~ (path | join('')) ~ "'") -}}
{%- endmacro %}

{% macro _postgres_json(expr) -%}
  {#- The JSON text expr as json, each \u0000 escape made \ufffd. PostgreSQL's text cannot hold U+0000,
      and its json functions fail on an object holding the escape anywhere, even in a key they do not
      read: one such event would fail the build. (A `\\u0000`, an escaped backslash, stays as it is.) -#}
  (case when strpos(cast({{ expr }} as text), '\u0000') > 0
        then regexp_replace(cast({{ expr }} as text), '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g')
        else cast({{ expr }} as text) end)::json
{%- endmacro %}

{% macro _postgres_json_path(expr, keys, as_text=false) -%}
  {#- (expr)::json -> 'k1' -> 'k2', the last step ->> when as_text. -#}
  {%- set steps = [_postgres_json(expr)] -%}
  {%- for key in keys -%}
    {%- do steps.append(('->>' if as_text and loop.last else '->') ~ " '" ~ (key | replace("'", "''")) ~ "'") -%}
  {%- endfor -%}
  {{- return('(' ~ (steps | join(' ')) ~ ')') -}}
{%- endmacro %}

{% macro json_text(expr, keys) -%}
  {#- The string at keys, or NULL when there is none or the value there is not a JSON string:
      extracting any value as text would turn false, 42 or {"a":1} into text, and `false` would
      be an email two strangers share. -#}
  {{ return(adapter.dispatch('json_text', 'revetl')(expr, keys)) }}
{%- endmacro %}

{% macro duckdb__json_text(expr, keys) -%}
  {%- set path = _duckdb_json_path(keys) -%}
  case when json_type({{ expr }}, {{ path }}) = 'VARCHAR'
       then json_extract_string({{ expr }}, {{ path }}) end
{%- endmacro %}

{% macro postgres__json_text(expr, keys) -%}
  case when json_typeof({{ _postgres_json_path(expr, keys) }}) = 'string'
       then {{ _postgres_json_path(expr, keys, as_text=true) }} end
{%- endmacro %}

{% macro json_scalar_text(expr, keys) -%}
  {#- The value at keys as text: a string unquoted, another value as JSON text; NULL for JSON null. -#}
  {{ return(adapter.dispatch('json_scalar_text', 'revetl')(expr, keys)) }}
{%- endmacro %}

{% macro duckdb__json_scalar_text(expr, keys) -%}
  json_extract_string({{ expr }}, {{ _duckdb_json_path(keys) }})
{%- endmacro %}

{% macro postgres__json_scalar_text(expr, keys) -%}
  {{ _postgres_json_path(expr, keys, as_text=true) }}
{%- endmacro %}

{% macro json_at(expr, keys) -%}
  {#- The JSON value at keys (NULL when there is none). -#}
  {{ return(adapter.dispatch('json_at', 'revetl')(expr, keys)) }}
{%- endmacro %}

{% macro duckdb__json_at(expr, keys) -%}
  json_extract({{ expr }}, {{ _duckdb_json_path(keys) }})
{%- endmacro %}

{% macro postgres__json_at(expr, keys) -%}
  {{ _postgres_json_path(expr, keys) }}
{%- endmacro %}

{% macro json_members(expr, alias) -%}
  {#- A join after a FROM item (lateral to its row): one row per key of the JSON object expr, the key
      as alias.key; read its value with json_member_value(expr, alias). -#}
  {{ return(adapter.dispatch('json_members', 'revetl')(expr, alias)) }}
{%- endmacro %}

{% macro duckdb__json_members(expr, alias) -%}
  cross join unnest(json_keys({{ expr }})) as {{ alias }}(key)
{%- endmacro %}

{% macro postgres__json_members(expr, alias) -%}
  cross join json_each({{ _postgres_json(expr) }}) as {{ alias }}(key, value)
{%- endmacro %}

{% macro json_member_value(expr, alias) -%}
  {{ return(adapter.dispatch('json_member_value', 'revetl')(expr, alias)) }}
{%- endmacro %}

{% macro duckdb__json_member_value(expr, alias) -%}
  json_extract({{ expr }}, '$."' || replace({{ alias }}.key, '"', '\"') || '"')
{%- endmacro %}

{% macro postgres__json_member_value(expr, alias) -%}
  {#- json_each read the value with the key: the object is parsed once, not once per key. -#}
  {{ alias }}.value
{%- endmacro %}

{% macro json_object_agg(key, value) -%}
  {#- The JSON object of key -> JSON value over a group (key order unspecified). -#}
  {{ return(adapter.dispatch('json_object_agg', 'revetl')(key, value)) }}
{%- endmacro %}

{% macro duckdb__json_object_agg(key, value) -%}
  json_group_object({{ key }}, {{ value }})
{%- endmacro %}

{% macro postgres__json_object_agg(key, value) -%}
  json_object_agg({{ key }}, {{ value }})
{%- endmacro %}

{% macro json_decimal(expr, keys) -%}
  {#- The number at keys as DECIMAL(27, 9) (nine decimal places, rounded half away from zero), or
      NULL when it is not a number or its magnitude is 10^18 or more (macros/traits.sql says why).
      A JSON number or a JSON string holding one, as DuckDB casts text: ASCII whitespace around it,
      single underscores between digits, an exponent; not NaN or Infinity. -#}
  {{ return(adapter.dispatch('json_decimal', 'revetl')(expr, keys)) }}
{%- endmacro %}

{% macro duckdb__json_decimal(expr, keys) -%}
  try_cast({{ duckdb__json_scalar_text(expr, keys) }} as decimal(27, 9))
{%- endmacro %}

{% macro postgres__json_decimal(expr, keys) -%}
  {#- DuckDB reads a JSON number with a fraction or an exponent as a double (then casts its shortest
      text), an integer exactly, and casts a string as it is, with exponents from -32768 to 32767.
      The same here: a regular expression for the text DuckDB's cast accepts, and guards where
      PostgreSQL's own casts would fail the build instead (float8 beyond 1e308, numeric exponents of
      10000 and more). A number written in more than 1,000 characters is no value here (DuckDB reads
      it): PostgreSQL's numeric cannot hold every such text, and no real property is one. -#}
  {%- set text = _postgres_json_path(expr, keys, as_text=true) -%}
  {%- set stripped = "translate(" ~ text ~ ", ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13) || '_', '')" -%}
  cast(case json_typeof({{ _postgres_json_path(expr, keys) }})
    when 'number' then case
      when length({{ text }}) > 1000 then null
      when {{ text }} ~ '^-?[0-9]+$' then {{ _postgres_decimal(text) }}
      when {{ _postgres_exponent_from_10000(text) }} then {{ _postgres_past_10000(text) }}
      when abs(cast({{ text }} as numeric)) >= 1e300 then null
      when abs(cast({{ text }} as numeric)) < 1e-300 then 0
      else {{ _postgres_decimal('cast(cast(' ~ text ~ ' as float8) as text)') }}
    end
    when 'string' then case
      when {{ text }} !~ '^[ \t\n\v\f\r]*[-+]?([0-9](_?[0-9])*(\.([0-9](_?[0-9])*)?)?|\.[0-9](_?[0-9])*)([eE][-+]?[0-9](_?[0-9])*)?[ \t\n\v\f\r]*$'
        then null
      when length({{ stripped }}) > 1000 then null
      when {{ stripped }} ~ '[eE]'
           and cast(substring({{ stripped }} from '[eE]([-+]?[0-9]+)$') as numeric) not between -32768 and 32767
        then null
      when {{ _postgres_exponent_from_10000(stripped) }} then {{ _postgres_past_10000(stripped) }}
      else {{ _postgres_decimal(stripped) }}
    end
  end as decimal(27, 9))
{%- endmacro %}

{% macro _postgres_exponent_from_10000(number) -%}
  {{ number }} ~ '[eE][-+]?0*[1-9][0-9]{4}'
{%- endmacro %}

{% macro _postgres_past_10000(number) -%}
  {#- number has an exponent of 10000 or more: 0 when it is negative or the number is 0, else too large. -#}
  case when {{ number }} ~ '[eE]-' or cast(substring({{ number }} from '^[^eE]*') as numeric) = 0 then 0 end
{%- endmacro %}

{% macro _postgres_decimal(number) -%}
  {#- number: the text of a numeric literal PostgreSQL can read; NULL from 10^18 on, once rounded. -#}
  case when abs(round(cast({{ number }} as numeric), 9)) < 1e18 then cast({{ number }} as numeric) end
{%- endmacro %}

{% macro json_array_items(expr, alias) -%}
  {#- A join after a FROM item (lateral to its row): one row per element of the JSON array expr, as
      alias.item (JSON); read its fields with json_scalar_text(alias ~ '.item', [key]). -#}
  {{ return(adapter.dispatch('json_array_items', 'revetl')(expr, alias)) }}
{%- endmacro %}

{% macro duckdb__json_array_items(expr, alias) -%}
  cross join unnest(json_extract({{ expr }}, '$[*]')) as {{ alias }}(item)
{%- endmacro %}

{% macro postgres__json_array_items(expr, alias) -%}
  cross join json_array_elements({{ _postgres_json(expr) }}) as {{ alias }}(item)
{%- endmacro %}
