{#-
  Computed traits (DESIGN 3). `revetl build` validates traits.yml (revetl/traits.py) and passes
  it as var('computed_traits'): a list of
    {name, kind, event, event_type, property, source, as, window, where}
  Each becomes one column of profile_traits, computed over the profile's events up to as_of()
  and, with a window, after as_of() - window. profile_traits fills in 0 and [] for profiles
  without matching events, so the aggregates here may return NULL.

  Numbers are exact decimals while they are aggregated, DOUBLE once computed. A sum of doubles
  depends on the order it adds them in, which DuckDB's parallel aggregation does not fix: two
  builds of the same events gave 194.06 and 194.06000000000003, and a sync mapping the trait saw a
  change that was not one. So a number property is read as DECIMAL(27, 9) (nine decimal places,
  rounded half away from zero; a value of 10^18 or more, like text that is no number, counts as no
  value), summed exactly (DECIMAL(38, 9): no overflow below 10^11 events per profile), and the
  result is cast to DOUBLE once: the same events give the same bytes, and a sum is the double
  nearest the exact decimal sum (0.1 + 0.2 + 0.3 is 0.6).
-#}

{% macro trait_output(trait, expr) -%}
  {#- The value the aggregate expr computed, as the trait's column type (numbers: DOUBLE). -#}
  {%- if trait['as'] == 'number' -%}
    cast({{ expr }} as {{ list_of(type_double()) if trait.kind == 'unique_list' else type_double() }})
  {%- else -%}
    {{ expr }}
  {%- endif -%}
{%- endmacro %}

{% macro trait_value(trait) -%}
  {#- The trait's property on one event: a DECIMAL(27, 9) number (or NULL), else text, compared code
      point by code point on every engine (min, max, most_frequent's ties, unique_list's order). -#}
  {%- set source = trait.source or 'properties' -%}
  {%- set path = (trait.property or '').split('.') -%}
  {%- if trait['as'] == 'number' -%}
    {{- return(json_decimal(source, path)) -}}
  {%- else -%}
    {{- return(codepoint_order(json_scalar_text(source, path))) -}}
  {%- endif -%}
{%- endmacro %}

{% macro _sql_list(values) -%}
  {%- set quoted = [] -%}
  {%- for value in values -%}{%- do quoted.append(string_literal(value)) -%}{%- endfor -%}
  {{- return('(' ~ (quoted | join(', ')) ~ ')') -}}
{%- endmacro %}

{% macro trait_condition(trait) -%}
  {%- set conditions = ['true'] -%}
  {%- if trait.event -%}{%- do conditions.append('event in ' ~ _sql_list(trait.event)) -%}{%- endif -%}
  {%- if trait.event_type -%}{%- do conditions.append('type in ' ~ _sql_list(trait.event_type)) -%}{%- endif -%}
  {%- if trait.window -%}
    {%- do conditions.append(adapter.quote('timestamp') ~ ' > ' ~ as_of() ~ " - interval '" ~ trait.window ~ "'") -%}
  {%- endif -%}
  {%- if trait.where -%}{%- do conditions.append('(' ~ trait.where ~ ')') -%}{%- endif -%}
  {{- return(conditions | join(' and ')) -}}
{%- endmacro %}

{% macro trait_aggregate(trait) -%}
  {#- The trait's value over one profile's events. The value is computed only on the events that
      match (a CASE, not a FILTER clause: FILTER still computes the aggregate's argument, a JSON
      extraction, on every event). -#}
  {%- set cond = trait_condition(trait) -%}
  {%- set kind = trait.kind -%}
  {%- set value = "case when " ~ cond ~ " then " ~ trait_value(trait) ~ " end" -%}
  {%- if kind == 'count' -%}
    count(case when {{ cond }} then 1 end)
  {%- elif kind in ('sum', 'avg', 'min', 'max') -%}
    {{ trait_output(trait, kind ~ '(' ~ value ~ ')') }}
  {%- elif kind in ('first', 'last') -%}
    {%- set order = [adapter.quote('timestamp'), codepoint_order('message_id')] -%}
    {{ trait_output(trait, arg_min_by(value, order) if kind == 'first' else arg_max_by(value, order)) }}
  {%- elif kind == 'unique_list' -%}
    {{ trait_output(trait, sorted_distinct_list(value)) }}
  {%- else -%}
    {{ exceptions.raise_compiler_error("computed trait `" ~ trait.name ~ "`: unknown kind `" ~ kind ~ "`") }}
  {%- endif -%}
{%- endmacro %}

{% macro most_frequent_cte(trait, base) -%}
  {#- Most frequent value; ties go to the smallest value so the result is deterministic. -#}
  select profile_id, {{ trait_output(trait, 'value') }} as {{ adapter.quote(trait.name) }}
  from (
      select profile_id, value,
             row_number() over (partition by profile_id order by occurrences desc, value) as frequency_rank
      from (
          select profile_id, value, count(*) as occurrences
          from (
              select profile_id, {{ trait_value(trait) }} as value
              from {{ base }}
              where {{ trait_condition(trait) }}
          ) as matching
          where value is not null
          group by profile_id, value
      ) as counted
  ) as ranked
  where frequency_rank = 1
{%- endmacro %}

{% macro columns_except(relation, alias, excluded) -%}
  {#- alias.column for every column of relation but those in excluded (`select * exclude` where the
      engine has none), read from the warehouse when the model runs. -#}
  {%- set columns = [] -%}
  {%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(relation) if column.name | lower not in excluded -%}
      {%- do columns.append(alias ~ '.' ~ adapter.quote(column.name)) -%}
    {%- endfor -%}
  {%- endif -%}
  {{- return(columns) -}}
{%- endmacro %}
