{#-
  One row per unique message_id: the landing columns, typed (DESIGN 2-3; stg_landing__events).
  A message_id landed more than once keeps the copy received first, then the first file by name,
  then the first row in it (int_events_later_copies finds the others).
-#}
{{ config(pre_hook="{{ drop_retired_models() }}") }}
select
    message_id,
    type,
    event,
    anonymous_id,
    user_id,
    group_id,
    previous_id,
    {{ adapter.quote('timestamp') }},
    received_at,
    properties,
    traits,
    context,
    -- The tracking plan's verdict (revetl/governance/gate.py): the JSON list of violations of an event
    -- landed flagged, else NULL. Read only where the text holds it: most events have none.
    case when context like '%"violationErrors"%'
         then cast({{ json_at('context', ['violationErrors']) }} as {{ dbt.type_string() }}) end as violations
from {{ ref('stg_landing__events') }} as landed
where message_id is not null
  and not exists (
      select 1 from {{ ref('int_events_later_copies') }} as later
      where later.landed_file = landed.landed_file and later.landed_row = landed.landed_row
  )
