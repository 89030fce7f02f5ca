{#- One row: the "as of" time of the latest build (`revetl build --as-of`, else when it ran, UTC)
    and when it ran. Audiences read it through `{{ as_of() }}` (revetl/audiences.py), so their
    time windows agree with the computed traits and a rebuilt warehouse gives the same members.

    Built after profile_traits (and so after every model it reads): where a build writes in place
    (PostgreSQL), a build that fails leaves the "as of" time of the traits still there. -#}
-- depends_on: {{ ref('profile_traits') }}
select
    {{ as_of() }} as as_of,
    {{ utc_now() }} as built_at
