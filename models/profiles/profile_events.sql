{#- One row per event that belongs to a profile: message_id -> profile_id. Events whose only
    identifiers are blocked or conflicting belong to no profile. A view over profiled_events. -#}
{{ config(materialized='view') }}
select message_id, profile_id
from {{ ref('profiled_events') }}
