{#-
  Every event that belongs to a profile: all columns of `events` and its profile_id. A view:
  profiles, profile_traits and trait models read events with their profile through it, without
  joining 'events' to 'profile_events' on message_id.

  An event's usable identifiers are all in one profile (they are linked), so an event with a
  usable user_id belongs to that user_id's profile (a lookup in a table the size of the users);
  the others were resolved once, in int_profiled_events_without_user_id.
-#}
{{ config(materialized='view') }}
select e.*, g.profile_id
from {{ ref('events') }} as e
join {{ ref('identity_graph') }} as g
    on g.identifier_type = 'user_id' and g.identifier_value = e.user_id
union all
select * from {{ ref('int_profiled_events_without_user_id') }}
