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
  {%- set cond = trait_condition(trait) -%}
  {%- set kind = trait.kind -%}
  {%- if kind == 'count' -%}
    count(*) filter (where {{ cond }})
  {%- elif kind == 'sum' -%}
    sum({{ trait_value(trait) }}) filter (where {{ cond }})
  {%- elif kind in ('avg', 'min', 'max') -%}
    {{ kind }}({{ trait_value(trait) }}) filter (where {{ cond }})
  {%- elif kind == 'first' -%}
    arg_min({{ trait_value(trait) }}, ("timestamp", message_id)) filter (where {{ cond }} and {{ trait_value(trait) }} is not null)
  {%- elif kind == 'last' -%}
    arg_max({{ trait_value(trait) }}, ("timestamp", message_id)) filter (where {{ cond }} and {{ trait_value(trait) }} is not null)
  {%- elif kind == 'unique_list' -%}
    list_sort(list(distinct {{ trait_value(trait) }}) filter (where {{ cond }} and {{ trait_value(trait) }} is not null))
  {%- else -%}
    {{ exceptions.raise_compiler_error("computed trait `" ~ trait.name ~ "`: unknown kind `" ~ kind ~ "`") }}
  {%- endif -%}
{%- endmacro %}

{% macro most_frequent_cte(trait, base) -%}
  {#- Most frequent value; ties go to the smallest value so the result is deterministic. -#}
  select profile_id, value as {{ adapter.quote(trait.name) }}
  from (
      select profile_id, {{ trait_value(trait) }} as value, count(*) as occurrences
      from {{ base }}
      where {{ trait_condition(trait) }} and {{ trait_value(trait) }} is not null
      group by all
  ) as counted
  qualify row_number() over (partition by profile_id order by occurrences desc, value) = 1
{%- endmacro %}
