{#-
  Computed traits (DESIGN 3). `revetl build` validates traits.yml (revetl/traits.py) and passes
  it as var('computed_traits'): a list of
    {name, kind, event, event_type, property, source, as, window, where}
  Each becomes one column of profile_traits, computed over the profile's events up to as_of()
  and, with a window, after as_of() - window. profile_traits fills in 0 and [] for profiles
  without matching events, so the aggregates here may return NULL.
-#}

{% macro trait_value(trait) -%}
  {%- set parts = [] -%}
  {%- for part in (trait.property or '').split('.') -%}
    {%- do parts.append('."' ~ (part | replace('"', '\\"') | replace("'", "''")) ~ '"') -%}
  {%- endfor -%}
  {%- set extracted = "json_extract_string(" ~ (trait.source or 'properties') ~ ", '$" ~ (parts | join('')) ~ "')" -%}
  {%- if trait['as'] == 'number' -%}
    {{- return("try_cast(" ~ extracted ~ " as double)") -}}
  {%- else -%}
    {{- return(extracted) -}}
  {%- endif -%}
{%- endmacro %}

{% macro _sql_list(values) -%}
  {%- set quoted = [] -%}
  {%- for value in values -%}{%- do quoted.append("'" ~ (value | replace("'", "''")) ~ "'") -%}{%- endfor -%}
  {{- return('(' ~ (quoted | join(', ')) ~ ')') -}}
{%- endmacro %}

{% macro trait_condition(trait) -%}
  {%- set conditions = ['true'] -%}
  {%- if trait.event -%}{%- do conditions.append('event in ' ~ _sql_list(trait.event)) -%}{%- endif -%}
  {%- if trait.event_type -%}{%- do conditions.append('type in ' ~ _sql_list(trait.event_type)) -%}{%- endif -%}
  {%- if trait.window -%}
    {%- do conditions.append('"timestamp" > ' ~ as_of() ~ " - interval '" ~ trait.window ~ "'") -%}
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
    {{ kind }}({{ value }})
  {%- elif kind in ('first', 'last') -%}
    arg_{{ 'min' if kind == 'first' else 'max' }}({{ value }}, case when ({{ value }}) is not null then ("timestamp", message_id) end)
  {%- elif kind == 'unique_list' -%}
    list_sort(list(distinct {{ value }}) filter (where ({{ value }}) is not null))
  {%- else -%}
    {{ exceptions.raise_compiler_error("computed trait `" ~ trait.name ~ "`: unknown kind `" ~ kind ~ "`") }}
  {%- endif -%}
{%- endmacro %}

{% macro most_frequent_cte(trait, base) -%}
  {#- Most frequent value; ties go to the smallest value so the result is deterministic. -#}
  select profile_id, value as {{ adapter.quote(trait.name) }}
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
  qualify row_number() over (partition by profile_id order by occurrences desc, value) = 1
{%- endmacro %}
