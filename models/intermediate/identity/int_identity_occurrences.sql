{#-
  Internal: one row per identifier of each sighting (int_identity_sightings), typed, with the
  sighting's own user_id and anonymous_id (which the merge protection counts) and when it was
  last seen.

  - email and extra identifiers: from traits and context.traits (lower-cased and trimmed).
  - alias: previous_id is a user_id if that value was ever a user_id, else an anonymous_id.
  An identifier can appear twice in one sighting (an alias whose previous_id is its own
  anonymous_id); readers count distinct values or group.
-#}
with sightings as (
    select * from {{ ref('int_identity_sightings') }}
),
known_user_ids as (
    select distinct user_id from sightings where user_id is not null
),
occurrences as (
    select sighting_id, user_id as event_user_id, anonymous_id as event_anonymous_id, last_seen,
           'user_id' as identifier_type, user_id as identifier_value
    from sightings where user_id is not null
    union all
    select sighting_id, user_id, anonymous_id, last_seen, 'anonymous_id', anonymous_id
    from sightings where anonymous_id is not null
    {%- for key in trait_identifiers() %}
    union all
    select sighting_id, user_id, anonymous_id, last_seen, '{{ key }}', {{ key }}_from_traits
    from sightings where {{ key }}_from_traits is not null
    union all
    select sighting_id, user_id, anonymous_id, last_seen, '{{ key }}', {{ key }}_from_context
    from sightings where {{ key }}_from_context is not null
    {%- endfor %}
    union all
    select s.sighting_id, s.user_id, s.anonymous_id, s.last_seen,
           case when k.user_id is not null then 'user_id' else 'anonymous_id' end,
           s.previous_id
    from sightings as s left join known_user_ids as k on s.previous_id = k.user_id
    where s.previous_id is not null
)
select * from occurrences
