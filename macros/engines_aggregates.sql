{#- Aggregates and lists whose SQL differs per engine (macros/engines.sql lists why). -#}

{% macro arg_max_by(value, keys, where=none) -%}
  {#- value at the row with the largest keys (a list of expressions, compared in order), among the
      rows (matching `where`) whose value is not NULL; NULL when there is none. -#}
  {{ return(adapter.dispatch('arg_max_by', 'revetl')(value, keys, where, 'max')) }}
{%- endmacro %}

{% macro arg_min_by(value, keys, where=none) -%}
  {#- value at the row with the smallest keys; otherwise as arg_max_by. -#}
  {{ return(adapter.dispatch('arg_max_by', 'revetl')(value, keys, where, 'min')) }}
{%- endmacro %}

{% macro duckdb__arg_max_by(value, keys, where, direction) -%}
  {#- arg_max/arg_min skip rows whose value or key is NULL; a tuple key compares field by field. -#}
  {%- set key = keys[0] if keys | length == 1 else '(' ~ (keys | join(', ')) ~ ')' -%}
  arg_{{ direction }}({{ value }}, {{ key }}){{ ' filter (where ' ~ where ~ ')' if where }}
{%- endmacro %}

{% macro postgres__arg_max_by(value, keys, where, direction) -%}
  {#- The first of the group's values sorted by keys (PostgreSQL has no arg_max). -#}
  {%- set order = [] -%}
  {%- for key in keys -%}
    {%- do order.append(key ~ (' desc nulls last' if direction == 'max' else '')) -%}
  {%- endfor -%}
  (array_agg({{ value }} order by {{ order | join(', ') }})
      filter (where ({{ value }}) is not null{{ ' and (' ~ where ~ ')' if where }}))[1]
{%- endmacro %}

{% macro sorted_distinct_list(value) -%}
  {#- The distinct non-NULL values of a group as a sorted list (NULL for a group without any). -#}
  {{ return(adapter.dispatch('sorted_distinct_list', 'revetl')(value)) }}
{%- endmacro %}

{% macro duckdb__sorted_distinct_list(value) -%}
  list_sort(list(distinct {{ value }}) filter (where ({{ value }}) is not null))
{%- endmacro %}

{% macro postgres__sorted_distinct_list(value) -%}
  array_agg(distinct {{ value }} order by {{ value }}) filter (where ({{ value }}) is not null)
{%- endmacro %}

{% macro empty_list(element_type) -%}
  {#- An empty list of element_type. -#}
  {{ return(adapter.dispatch('empty_list', 'revetl')(element_type)) }}
{%- endmacro %}

{% macro duckdb__empty_list(element_type) -%}
  cast([] as {{ element_type }}[])
{%- endmacro %}

{% macro default__empty_list(element_type) -%}
  {{ dbt.array_construct([], element_type) }}
{%- endmacro %}
