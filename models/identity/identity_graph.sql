{#-
  One row per identifier: which profile it belongs to (DESIGN 3, rule 5).
  A profile is a connected component of usable identifiers. Its profile_id is the md5 of the
  component's first identifier by (user_id, email, extras, anonymous_id; then value): a function of
  the component alone, so it is the same whatever order events arrived in or how often we rebuild.
  int_identity_nodes numbers identifiers in that order, so the first identifier is the smallest node_id
  and md5 runs once per profile.
-#}
{{ config(
    pre_hook="{{ fast_unique_string_writes() }}",
    post_hook=["{{ drop_connected_components_work() }}", "{{ fast_unique_string_writes(reset=true) }}"]
) }}
with components as (
    -- The component of node n is coalesce(component, n) (macros/connected_components.sql).
    {{ connected_components("select src, dst from " ~ ref('int_identity_edges')) }}
),
first_nodes as (
    -- A component's id is one of its nodes, which may not be listed itself.
    select component, least(component, min(node)) as first_node
    from components
    group by component
),
names as (
    select f.component, md5({{ identifier_name_key('n.identifier_type', 'n.identifier_value') }}) as profile_id
    from first_nodes as f
    join {{ ref('int_identity_nodes') }} as n on n.node_id = f.first_node
)
select
    n.identifier_type,
    n.identifier_value,
    -- Not in names: an identifier without edges, a profile of its own.
    coalesce(names.profile_id, md5({{ identifier_name_key('n.identifier_type', 'n.identifier_value') }})) as profile_id
from {{ ref('int_identity_nodes') }} as n
left join components as c on c.node = n.node_id
left join names on names.component = coalesce(c.component, n.node_id)
