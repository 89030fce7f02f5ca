{#- A free-SQL trait model: any model with a profile_id column, listed under `models:` in
    traits.yml, adds its columns to profile_traits. -#}
select
    p.profile_id,
    count(distinct cast(e."timestamp" as date)) as active_days_30d
from {{ ref('events') }} as e
join {{ ref('profile_events') }} as p using (message_id)
where e."timestamp" <= {{ as_of() }}
  and e."timestamp" > {{ as_of() }} - interval '30 days'
group by p.profile_id
