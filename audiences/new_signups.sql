-- description: People who signed up in the 14 days before the build's as-of time, for the onboarding journey.
-- key: user_id
-- owner: growth
-- tags: [onboarding]

-- `created_at` is the identify trait the product sets at sign-up (ISO-8601 text); safe_cast() makes
-- a malformed one NULL (that person is left out) on every warehouse instead of failing the audience.
with signups as (
    select
        profile_id,
        user_id,
        email,
        name,
        company,
        plan,
        {{ safe_cast('created_at', 'timestamp') }} as signed_up_at
    from {{ ref('profiles') }}
    where user_id is not null
)
select
    s.user_id,
    s.email,
    s.name,
    s.company,
    s.plan,
    s.signed_up_at,
    {{ days_between('s.signed_up_at', as_of()) }} as days_since_signup,
    t.events_30d,
    t.first_page
from signups as s
join {{ ref('profile_traits') }} as t using (profile_id)
where s.signed_up_at > {{ as_of() }} - interval 14 days
  and s.signed_up_at <= {{ as_of() }}
