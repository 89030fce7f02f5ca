{#-
  One row per identifier left out of merging (DESIGN 3, rule 4): a non-user_id identifier seen
  with too many distinct user_ids (a shared device, a support mailbox), or an email / extra
  identifier seen with too many distinct anonymous_ids (a junk value typed into forms by strangers).
-#}
{%- set max_users = var('max_user_ids_per_identifier') -%}
{%- set max_anonymous = var('max_anonymous_ids_per_identifier') -%}
with counts as (
    select
        identifier_type,
        identifier_value,
        count(distinct event_user_id) as distinct_user_ids,
        count(distinct event_anonymous_id) as distinct_anonymous_ids
    from {{ ref('int_identity_occurrences') }}
    where identifier_type <> 'user_id'
    group by identifier_type, identifier_value
)
select
    identifier_type,
    identifier_value,
    case
        when distinct_user_ids > {{ max_users }}
            then 'seen with ' || distinct_user_ids || ' distinct user_ids (max_user_ids_per_identifier = {{ max_users }})'
        else 'seen with ' || distinct_anonymous_ids || ' distinct anonymous_ids (max_anonymous_ids_per_identifier = {{ max_anonymous }})'
    end as reason,
    distinct_user_ids,
    distinct_anonymous_ids
from counts
where distinct_user_ids > {{ max_users }}
   or (identifier_type <> 'anonymous_id' and distinct_anonymous_ids > {{ max_anonymous }})
