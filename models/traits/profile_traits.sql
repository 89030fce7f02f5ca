{#-
  One row per profile: profile_id plus one column per computed trait (traits.yml, rendered by
  macros/traits.sql), then the columns of every free-SQL trait model listed there (joined on
  profile_id). Only events up to as_of() count, so a fixed --as-of gives reproducible values.
-#}
{%- set traits = var('computed_traits', []) -%}
{%- set aggregated = traits | rejectattr('kind', 'equalto', 'most_frequent') | list -%}
{%- set frequent = traits | selectattr('kind', 'equalto', 'most_frequent') | list -%}
{%- set profiled -%}
(select * from {{ ref('profiled_events') }} where {{ adapter.quote('timestamp') }} <= {{ as_of() }})
{%- endset -%}
with aggregated as (
    select
        profile_id
        {%- for trait in aggregated %},
        {{ trait_aggregate(trait) }} as {{ adapter.quote(trait.name) }}
        {%- endfor %}
    from {{ profiled }} as profiled
    group by profile_id
)
{%- for trait in frequent %},
frequent_{{ loop.index }} as (
    {{ most_frequent_cte(trait, profiled ~ ' as profiled') }}
)
{%- endfor %}
select
    p.profile_id
    {%- for trait in aggregated %},
    {%- if trait.kind in ('count', 'sum') %}
    coalesce(a.{{ adapter.quote(trait.name) }}, 0) as {{ adapter.quote(trait.name) }}
    {%- elif trait.kind == 'unique_list' %}
    coalesce(a.{{ adapter.quote(trait.name) }}, {{ empty_list(type_double() if trait['as'] == 'number' else dbt.type_string()) }}) as {{ adapter.quote(trait.name) }}
    {%- else %}
    a.{{ adapter.quote(trait.name) }}
    {%- endif %}
    {%- endfor %}
    {%- for trait in frequent %},
    frequent_{{ loop.index }}.{{ adapter.quote(trait.name) }}
    {%- endfor %}
    {%- for model in var('trait_models', []) %}
    {%- set alias = 'trait_model_' ~ loop.index %}
    {%- for column in columns_except(ref(model), alias, ['profile_id']) %},
    {{ column }}
    {%- endfor %}
    {%- endfor %}
from {{ ref('profiles') }} as p
left join aggregated as a using (profile_id)
{%- for trait in frequent %}
left join frequent_{{ loop.index }} using (profile_id)
{%- endfor %}
{%- for model in var('trait_models', []) %}
left join {{ ref(model) }} as trait_model_{{ loop.index }} on trait_model_{{ loop.index }}.profile_id = p.profile_id
{%- endfor %}
