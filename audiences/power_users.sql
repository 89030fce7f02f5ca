-- description: Enterprise users who generated 10 or more reports in the 30 days before the build's as-of time.
-- key: user_id
-- owner: product
-- tags: [engagement, enterprise]
select
    p.user_id,
    p.email,
    p.name,
    p.company,
    p.plan,
    t.reports_30d,
    t.active_days_30d,
    t.events_30d,
    t.top_dashboard
from {{ ref('profiles') }} as p
join {{ ref('profile_traits') }} as t using (profile_id)
where p.user_id is not null
  and p.plan = 'enterprise'
  and t.reports_30d >= 10
