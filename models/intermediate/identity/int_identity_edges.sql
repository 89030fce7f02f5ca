{#-
  Internal: the identity graph's edges (DESIGN 3, rule 3). All usable identifiers seen together
  (one sighting: the identifiers of one event) are linked; a star from the sighting's smallest node
  to the others links them with fewest edges.
-#}
with sighting_nodes as (
    select distinct o.sighting_id, n.node_id
    from {{ ref('int_identity_occurrences') }} as o
    join {{ ref('int_identity_nodes') }} as n
        on o.identifier_type = n.identifier_type and o.identifier_value = n.identifier_value
),
anchored as (
    select sighting_id, node_id, min(node_id) over (partition by sighting_id) as anchor
    from sighting_nodes
)
select distinct anchor as src, node_id as dst
from anchored
where node_id <> anchor
