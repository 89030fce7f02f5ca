{#- Internal: every identifier that may join a profile, numbered for the graph algorithm. -#}
with usable as (
    select distinct o.identifier_type, o.identifier_value
    from {{ ref('identity_occurrences') }} as o
    anti join {{ ref('identity_conflicts') }} as c
        on o.identifier_type = c.identifier_type and o.identifier_value = c.identifier_value
)
select
    row_number() over (order by identifier_type, identifier_value) - 1 as node_id,
    identifier_type,
    identifier_value
from usable
