{#-
  One row per unique message_id: the landing columns, typed (DESIGN 2-3).
  A message_id landed more than once keeps the copy received first (then the first file by name).
-#}
with landed as (
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
        cast(context as varchar) as context,
        filename
    from read_parquet(
        '{{ var("landing_dir") }}/**/*.parquet',
        hive_partitioning = true, union_by_name = true, filename = true
    )
    where message_id is not null
)
select * exclude (filename)
from landed
qualify row_number() over (partition by message_id order by received_at, filename) = 1
