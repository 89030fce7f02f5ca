-- description: Known people with 5 or more events in the 30 days before the build's as-of time.
-- key: user_id
-- owner: growth
-- tags: [example]

-- An example: edit it or add your own beside it. Write time windows against as_of() (or the computed
-- traits of traits.yml), never now(): the same build then gives the same members.
select p.user_id, p.email, p.name, p.plan,
       t.events_30d, t.last_page,
       {{ days_between('p.last_seen_at', as_of()) }} as days_since_seen
from {{ ref('profiles') }} as p
inner join {{ ref('profile_traits') }} as t on t.profile_id = p.profile_id
where t.events_30d >= 5 and p.user_id is not null
