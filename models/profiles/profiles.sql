{#-
  One row per profile (DESIGN 3): latest known user_id and email, first/last seen, and the latest
  value of every trait sent with identify calls (`traits`, JSON; context.traits when an identify
  carries no traits), some of which are also columns
  (var profile_trait_columns). "Latest" is by event timestamp, ties broken by value.
-#}
{%- set reserved = ['profile_id', 'user_id', 'email', 'first_seen_at', 'last_seen_at', 'event_count', 'traits'] -%}
{%- set timestamp = adapter.quote('timestamp') -%}
{%- set latest_identifier = ['o.last_seen', codepoint_order('o.identifier_value')] -%}
with seen as (
    select profile_id, min({{ timestamp }}) as first_seen_at, max({{ timestamp }}) as last_seen_at, count(*) as event_count
    from {{ ref('profiled_events') }}
    group by profile_id
),
-- The latest occurrence of an identifier is the last time one of its sightings was seen.
identifiers as (
    select
        g.profile_id,
        {{ arg_max_by('o.identifier_value', latest_identifier, where="o.identifier_type = 'user_id'") }} as user_id,
        {{ arg_max_by('o.identifier_value', latest_identifier, where="o.identifier_type = 'email'") }} as email
    from {{ ref('int_identity_occurrences') }} as o
    join {{ ref('identity_graph') }} as g
        on o.identifier_type = g.identifier_type and o.identifier_value = g.identifier_value
    where o.identifier_type in ('user_id', 'email')
    group by g.profile_id
),
identifies as (
    select profile_id, {{ timestamp }}, message_id, traits
    from {{ ref('profiled_events') }}
    where type = 'identify' and traits is not null
    union all
    -- RudderStack's SDKs send identify traits only in context.traits. (A branch of its own, so
    -- that `context` is read only for these few events.)
    select profile_id, {{ timestamp }}, message_id, cast({{ json_at('context', ['traits']) }} as {{ dbt.type_string() }})
    from {{ ref('profiled_events') }}
    where type = 'identify' and traits is null
),
trait_values as (
    select
        identifies.profile_id,
        keys.key,
        {{ arg_max_by(json_member_value('identifies.traits', 'keys'),
                      ['identifies.' ~ timestamp, codepoint_order('identifies.message_id')]) }} as value
    from identifies {{ json_members('identifies.traits', 'keys') }}
    where identifies.traits is not null
    group by identifies.profile_id, keys.key
),
merged_traits as (
    select profile_id, {{ json_object_agg('key', 'value') }} as traits
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
    {{ json_scalar_text('t.traits', [column]) }} as {{ adapter.quote(column) }}
    {%- endfor %}
from seen as s
left join identifiers as i using (profile_id)
left join merged_traits as t using (profile_id)
