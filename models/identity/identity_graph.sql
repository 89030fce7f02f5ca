{#-
  One row per identifier: which profile it belongs to (DESIGN 3, rule 5).
  A profile is a connected component of usable identifiers. Its profile_id is the md5 of the
  component's first identifier by (user_id, email, extras, anonymous_id; then value): a function of
  the component alone, so it is the same whatever order events arrived in or how often we rebuild.
-#}
{{ config(post_hook="{{ drop_connected_components_work() }}") }}
with components as (
    {{ connected_components("select src, dst from " ~ ref('identity_edges')) }}
),
labelled as (
    select
        n.identifier_type,
        n.identifier_value,
        coalesce(c.component, n.node_id) as component
    from {{ ref('identity_nodes') }} as n
    left join components as c on n.node_id = c.node
),
named as (
    select
        component,
        min({{ identifier_priority('identifier_type') }} || identifier_type || ':' || identifier_value) as first_identifier
    from labelled
    group by component
)
select
    l.identifier_type,
    l.identifier_value,
    md5(n.first_identifier) as profile_id
from labelled as l
join named as n using (component)
