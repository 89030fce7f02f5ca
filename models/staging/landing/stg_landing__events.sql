{#-
  The landed events, one row per landed row (duplicates included): names and types only
  (DESIGN 2-3). Times become UTC TIMESTAMPs, the JSON columns text, `type` lower-case; where a row
  was read from (file, row in it) is kept, because `events` keeps the copy received first and
  breaks ties by it.

  Ephemeral (dbt_project.yml): a CTE of `events`, which reads it once, so DuckDB inlines it and
  reads only the columns it needs from the files. A model that read it twice would make DuckDB
  materialize it whole (see int_events_later_copies).
-#}
select
    message_id,
    lower(type) as type,
    event,
    anonymous_id,
    user_id,
    group_id,
    previous_id,
    {{ utc_timestamp(adapter.quote('timestamp')) }} as {{ adapter.quote('timestamp') }},
    {{ utc_timestamp('received_at') }} as received_at,
    cast(properties as {{ dbt.type_string() }}) as properties,
    cast(traits as {{ dbt.type_string() }}) as traits,
    cast(context as {{ dbt.type_string() }}) as context,
    filename as landed_file,
    file_row_number as landed_row
from {{ landed_events() }} as landed
