{#-
  Which landed rows are later copies of a message_id landed before (DESIGN 2: duplicates are
  dropped, keeping the copy received first, then the first file by name, then the first row in
  it): the file and row of every copy but the first. `events` leaves them out.

  Duplicates are rare, so rather than ranking every landed row by message_id (a sort of every
  row), the copies are found on narrow columns: message ids whose hash occurs more than once, then,
  among those rows only, every copy but the first.

  It reads the source itself, twice, rather than stg_landing__events: each read then reads only
  the columns it needs from the files. Both models are ephemeral (CTEs of `events`), and DuckDB
  materializes a CTE read more than once, every column of every landed row: at 4M events that
  took `events` from 0.75 GB to 2.5 GB peak. The times compared are as landed (the same order as
  stg_landing__events's UTC timestamps for revetl's TIMESTAMPTZ columns). File names compare code
  point by code point on every engine (DuckDB's absolute paths and PostgreSQL's paths relative to
  the landing directory sort alike).
-#}
{%- set landed = landed_events() -%}
with repeated as (
    select {{ hash64('message_id', 0) }} as message_hash
    from {{ landed }} as landed
    where message_id is not null
    group by 1
    having count(*) > 1
)
select landed_file, landed_row
from (
    select
        filename as landed_file,
        file_row_number as landed_row,
        row_number() over (
            partition by message_id order by received_at, {{ codepoint_order('filename') }}, file_row_number
        ) as copy
    from {{ landed }} as landed
    where message_id is not null
      and {{ hash64('message_id', 0) }} in (select message_hash from repeated)
) as copies
where copy > 1
