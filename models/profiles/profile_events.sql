{#- One row per event that belongs to a profile: message_id -> profile_id. Events whose only
    identifiers are blocked or conflicting belong to no profile. -#}
select o.message_id, min(g.profile_id) as profile_id
from {{ ref('identity_occurrences') }} as o
join {{ ref('identity_graph') }} as g
    on o.identifier_type = g.identifier_type and o.identifier_value = g.identifier_value
group by o.message_id
