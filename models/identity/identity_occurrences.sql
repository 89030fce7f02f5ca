{#-
  Internal: the identifiers seen on each event (DESIGN 3, rules 1-3), blocked values removed. An
  identifier can appear twice on one event (an alias whose previous_id is its own anonymous_id);
  every reader counts distinct values or groups, so the rows are not deduplicated (it is costly).
  Each row carries the event's own user_id and anonymous_id, which the merge protection counts.

  - email: lower-cased and trimmed, from traits.email and context.traits.email. A group call's
    `traits` describe the group (its billing email would merge every member), so only its
    context.traits are read.
  - extra identifiers (var extra_identifiers): the same, for each listed trait key.
  - alias: previous_id is a user_id if that value was ever a user_id, else an anonymous_id.
-#}
{%- set trait_identifiers = ['email'] + var('extra_identifiers', []) -%}
with cleaned as (
    select
        message_id,
        type,
        "timestamp",
        {{ clean_identifier('user_id') }} as user_id,
        {{ clean_identifier('anonymous_id') }} as anonymous_id,
        case when type = 'alias' then {{ clean_identifier('previous_id') }} end as previous_id,
        {%- for key in trait_identifiers %}
        case when type <> 'group' then {{ clean_email("json_extract_string(traits, '$.\"" ~ key ~ "\"')") }} end
            as {{ key }}_from_traits,
        {{ clean_email("json_extract_string(context, '$.traits.\"" ~ key ~ "\"')") }} as {{ key }}_from_context{{ "," if not loop.last }}
        {%- endfor %}
    from {{ ref('events') }}
),

known_user_ids as (
    select distinct user_id from cleaned where user_id is not null
),

occurrences as (
    select message_id, "timestamp", user_id, anonymous_id, 'user_id' as identifier_type, user_id as identifier_value
    from cleaned where user_id is not null
    union all
    select message_id, "timestamp", user_id, anonymous_id, 'anonymous_id', anonymous_id
    from cleaned where anonymous_id is not null
    {%- for key in trait_identifiers %}
    union all
    select message_id, "timestamp", user_id, anonymous_id, '{{ key }}', {{ key }}_from_traits
    from cleaned where {{ key }}_from_traits is not null
    union all
    select message_id, "timestamp", user_id, anonymous_id, '{{ key }}', {{ key }}_from_context
    from cleaned where {{ key }}_from_context is not null
    {%- endfor %}
    union all
    select c.message_id, c."timestamp", c.user_id, c.anonymous_id,
           case when k.user_id is not null then 'user_id' else 'anonymous_id' end,
           c.previous_id
    from cleaned as c left join known_user_ids as k on c.previous_id = k.user_id
    where c.previous_id is not null
)

select
    message_id,
    "timestamp",
    user_id as event_user_id,
    anonymous_id as event_anonymous_id,
    identifier_type,
    identifier_value
from occurrences
