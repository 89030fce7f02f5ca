{#-
  One row per tracking-plan violation of a landed event (README "Tracking plans"): the list in
  `events.violations` (context.violationErrors, written by revetl/governance/gate.py) unnested, with
  the plan and source from context.trackingPlan. Blocked events never landed: they are in the
  quarantine, counted by `revetl violations`.
-#}
select
    e.message_id,
    e.type,
    e.event,
    e.received_at,
    {{ json_text('e.context', ['trackingPlan', 'name']) }} as tracking_plan,
    {{ json_text('e.context', ['trackingPlan', 'source']) }} as source,
    {{ json_scalar_text('v.item', ['type']) }} as kind,
    {{ json_scalar_text('v.item', ['property']) }} as property,
    {{ json_scalar_text('v.item', ['message']) }} as message,
    coalesce({{ json_scalar_text('v.item', ['omitted']) }} = 'true', false) as omitted
from {{ ref('events') }} as e
cross join {{ json_array_items('e.violations', 'v') }}
where e.violations is not null
