{#-
  One row per tracking-plan violation (README "Tracking plans"): of the landed events (their
  `violations`, context.violationErrors written by revetl/governance/gate.py), and of the events a plan
  blocked that are still in the quarantine (`blocked` true), each list unnested, with the plan and source
  from context.trackingPlan.
-#}
{%- for relation, blocked in [('events', 'false'), ('quarantined_events', 'true')] %}
{%- if not loop.first %}
union all
{%- endif %}
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
    coalesce({{ json_scalar_text('v.item', ['omitted']) }} = 'true', false) as omitted,
    {{ blocked }} as blocked
from {{ ref(relation) }} as e
{{ json_array_items('e.violations', 'v') }}
where e.violations is not null
{%- endfor %}
