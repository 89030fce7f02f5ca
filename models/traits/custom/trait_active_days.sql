{#- A free-SQL trait model: any model with a profile_id column, listed under `models:` in
    traits.yml, adds its columns to profile_traits. profiled_events is `events` with profile_id. -#}
{%- set timestamp = adapter.quote('timestamp') -%}
select
    profile_id,
    count(distinct cast({{ timestamp }} as date)) as active_days_30d
from {{ ref('profiled_events') }}
where {{ timestamp }} <= {{ as_of() }}
  and {{ timestamp }} > {{ as_of() }} - interval '30 days'
group by profile_id
