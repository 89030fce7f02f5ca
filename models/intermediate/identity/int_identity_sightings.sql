{#-
  Internal: the distinct sets of identifiers seen together on events (DESIGN 3, rules 1-3), with
  the last time each set was seen. Blocked values are NULL (macros/identity.sql). A user sends the
  same few identifiers on most of their events, so this is far smaller than `events`; everything
  identity needs (conflicts, nodes, edges, latest user_id and email) is a function of it.
-#}
{%- set names = event_identifier_names() -%}
{%- set timestamp = adapter.quote('timestamp') -%}
with identified as (
    select {{ event_identifier_columns() }}, {{ timestamp }}
    from {{ ref('events') }}
),
sightings as (
    select {{ names | join(', ') }}, max({{ timestamp }}) as last_seen
    from identified
    group by {{ names | join(', ') }}
)
select {{ row_id(names) }} as sighting_id, *
from sightings
where coalesce({{ names | join(', ') }}) is not null
