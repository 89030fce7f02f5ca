{#-
  Internal: the events without a usable user_id (none, or a blocked value) that belong to a profile
  through another identifier (anonymous_id, email, extras, alias previous_id): every column of
  `events` and the profile_id. An event with a usable user_id belongs to that user_id's profile,
  which profiled_events looks up directly; these are the few others.
-#}
{%- set trait_columns = [] -%}
{%- for key in trait_identifiers() -%}
  {%- do trait_columns.append((key, key ~ '_from_traits')) -%}
  {%- do trait_columns.append((key, key ~ '_from_context')) -%}
{%- endfor -%}
with candidates as (
    select *
    from {{ ref('events') }}
    where {{ clean_identifier('user_id') }} is null
),
identified as (
    select message_id, {{ event_identifier_columns() }}
    from candidates
),
user_ids as (
    select identifier_value, profile_id from {{ ref('identity_graph') }} where identifier_type = 'user_id'
),
occurrences as (
    select message_id, 'anonymous_id' as identifier_type, anonymous_id as identifier_value
    from identified where anonymous_id is not null
    {%- for key, column in trait_columns %}
    union all
    select message_id, '{{ key }}', {{ column }} from identified where {{ column }} is not null
    {%- endfor %}
    union all
    -- alias: previous_id is a user_id if that value was ever a user_id (then it is a node), else an anonymous_id
    select i.message_id, case when u.identifier_value is not null then 'user_id' else 'anonymous_id' end, i.previous_id
    from identified as i left join user_ids as u on u.identifier_value = i.previous_id
    where i.previous_id is not null
),
-- All usable identifiers of one event are in one component: any of them gives the profile.
resolved as (
    select o.message_id, min(g.profile_id) as profile_id
    from occurrences as o
    join {{ ref('identity_graph') }} as g
        on g.identifier_type = o.identifier_type and g.identifier_value = o.identifier_value
    group by o.message_id
)
select c.*, r.profile_id
from candidates as c
join resolved as r on r.message_id = c.message_id
