-- description: Paying customers who were active 31-60 days ago and have not been seen in the 30 days since.
-- key: user_id
-- owner: customer-success
-- tags: [retention, paid]

-- A win-back list: "active" means any event, counted up to the build's as-of time
-- (events_60d and events_30d in traits.yml), so a rebuild with the same --as-of gives the same people.
select
    p.user_id,
    p.email,
    p.name,
    p.company,
    p.plan,
    p.last_seen_at,
    {{ days_between('p.last_seen_at', as_of()) }} as days_inactive,
    t.events_60d as events_31_60d,  -- none in the last 30 days, so all of them are 31-60 days old
    t.revenue_90d,
    t.top_dashboard
from {{ ref('profiles') }} as p
join {{ ref('profile_traits') }} as t using (profile_id)
where p.user_id is not null
  and p.plan in ('starter', 'pro', 'enterprise')
  and t.events_60d > 0   -- active in the 60 days before as-of ...
  and t.events_30d = 0   -- ... but not in the last 30
