{#-
  Internal: every identifier that may join a profile, numbered for the graph algorithm in the
  order that names profiles (identifier_name_key): the first identifier of a component is the one
  with the smallest node_id, so identity_graph names a component with one min() over integers.
  The keys compare code point by code point on every engine, whatever the database's collation.
-#}
with usable as (
    select distinct o.identifier_type, o.identifier_value
    from {{ ref('int_identity_occurrences') }} as o
    where not exists (
        select 1 from {{ ref('identity_conflicts') }} as c
        where c.identifier_type = o.identifier_type and c.identifier_value = o.identifier_value
    )
)
select
    row_number() over (order by {{ codepoint_order(identifier_name_key()) }}) - 1 as node_id,
    identifier_type,
    identifier_value
from usable
