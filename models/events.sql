{#-
  One row per unique message_id: the landing columns, typed (DESIGN 2-3).
  A message_id landed more than once keeps the copy received first (then the first file by name,
  then the first row in it).

  Duplicates are rare, so rather than ranking every event by message_id (a sort of every column of
  every event), the copies to drop are found first on narrow columns: message ids whose hash occurs
  more than once, then, among those rows only, every copy but the first. The events are read once
  more and those rows left out. Each read of the Parquet files reads only the columns it needs.
-#}
{%- set landed -%}
read_parquet(
    '{{ var("landing_dir") }}/**/*.parquet',
    hive_partitioning = true, union_by_name = true, filename = true, file_row_number = true
)
{%- endset -%}
with repeated as (
    select {{ hash64('message_id', 0) }} as message_hash
    from {{ landed }}
    where message_id is not null
    group by 1
    having count(*) > 1
),
later_copies as (
    select filename, file_row_number
    from {{ landed }}
    where message_id is not null
      and {{ hash64('message_id', 0) }} in (select message_hash from repeated)
    qualify row_number() over (
        partition by message_id order by received_at, filename, file_row_number
    ) > 1
)
select
    message_id,
    lower(type) as type,
    event,
    anonymous_id,
    user_id,
    group_id,
    previous_id,
    timezone('UTC', cast("timestamp" as timestamptz)) as "timestamp",
    timezone('UTC', cast(received_at as timestamptz)) as received_at,
    cast(properties as varchar) as properties,
    cast(traits as varchar) as traits,
    cast(context as varchar) as context
from {{ landed }} as landed
where message_id is not null
  and not exists (
      select 1 from later_copies as later
      where later.filename = landed.filename and later.file_row_number = landed.file_row_number
  )
