{#-
  One row per event a tracking plan blocked and that is still in the quarantine (README "Tracking
  plans"): the landing columns, typed as in `events`, and `violations`, why it was blocked. Read from
  the quarantine when there are files (var `quarantine_files`): its Parquet in place on DuckDB and
  Spark, the copy `revetl load` mirrors on PostgreSQL; otherwise no rows. `revetl violations replay`
  lands them once the plan is fixed; the next build shows what is left.
-#}
{%- set columns = ['message_id', 'type', 'event', 'anonymous_id', 'user_id', 'group_id', 'previous_id'] -%}
{%- if var('quarantine_files', false) %}
select
    {%- for column in columns %}
    {{ column }},
    {%- endfor %}
    {{ utc_timestamp(adapter.quote('timestamp')) }} as {{ adapter.quote('timestamp') }},
    {{ utc_timestamp('received_at') }} as received_at,
    cast(properties as {{ dbt.type_string() }}) as properties,
    cast(traits as {{ dbt.type_string() }}) as traits,
    cast(context as {{ dbt.type_string() }}) as context,
    cast({{ json_at('context', ['violationErrors']) }} as {{ dbt.type_string() }}) as violations
from {{ quarantined() }}
{%- else %}
select
    {%- for column in columns %}
    cast(null as {{ dbt.type_string() }}) as {{ column }},
    {%- endfor %}
    cast(null as {{ dbt.type_timestamp() }}) as {{ adapter.quote('timestamp') }},
    cast(null as {{ dbt.type_timestamp() }}) as received_at,
    cast(null as {{ dbt.type_string() }}) as properties,
    cast(null as {{ dbt.type_string() }}) as traits,
    cast(null as {{ dbt.type_string() }}) as context,
    cast(null as {{ dbt.type_string() }}) as violations
where 1 = 0
{%- endif %}
