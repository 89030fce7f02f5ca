{#-
  One row per profile (DESIGN 3): latest known user_id and email, first/last seen, and the latest
  value of every trait sent with identify calls (`traits`, JSON; context.traits when an identify
  carries no traits), some of which are also columns
  (var profile_trait_columns). "Latest" is by event timestamp, ties broken by value.
-#}
{%- set reserved = ['profile_id', 'user_id', 'email', 'first_seen_at', 'last_seen_at', 'event_count', 'traits'] -%}
with profiled as (
    -- RudderStack's SDKs send identify traits only in context.traits.
    select e.* replace (coalesce(e.traits, json_extract(e.context, '$.traits')::varchar) as traits), p.profile_id
    from {{ ref('events') }} as e
    join {{ ref('profile_events') }} as p using (message_id)
),
seen as (
    select profile_id, min("timestamp") as first_seen_at, max("timestamp") as last_seen_at, count(*) as event_count
    from profiled
    group by profile_id
),
identifiers as (
    select
        g.profile_id,
        arg_max(o.identifier_value, (o."timestamp", o.identifier_value))
            filter (where o.identifier_type = 'user_id') as user_id,
        arg_max(o.identifier_value, (o."timestamp", o.identifier_value))
            filter (where o.identifier_type = 'email') as email
    from {{ ref('identity_occurrences') }} as o
    join {{ ref('identity_graph') }} as g
        on o.identifier_type = g.identifier_type and o.identifier_value = g.identifier_value
    group by g.profile_id
),
trait_values as (
    select
        profiled.profile_id,
        keys.key,
        arg_max(
            json_extract(profiled.traits, '$."' || replace(keys.key, '"', '\"') || '"'),
            (profiled."timestamp", profiled.message_id)
        ) as value
    from profiled, unnest(json_keys(profiled.traits)) as keys(key)
    where profiled.type = 'identify' and profiled.traits is not null
    group by profiled.profile_id, keys.key
),
merged_traits as (
    select profile_id, json_group_object(key, value) as traits
    from trait_values
    group by profile_id
)
select
    s.profile_id,
    i.user_id,
    i.email,
    s.first_seen_at,
    s.last_seen_at,
    s.event_count,
    t.traits
    {%- for column in var('profile_trait_columns', []) %}
    {%- if column in reserved %}
    {{ exceptions.raise_compiler_error("profile_trait_columns: `" ~ column ~ "` is already a column of profiles") }}
    {%- endif %},
    json_extract_string(t.traits, '$."{{ column }}"') as {{ adapter.quote(column) }}
    {%- endfor %}
from seen as s
left join identifiers as i using (profile_id)
left join merged_traits as t using (profile_id)
