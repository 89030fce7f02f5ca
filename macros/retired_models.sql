{% macro drop_retired_models() %}
  {#-
    Pre-hook of `events` (the root of every model): drop the relations of models that were renamed
    or removed, from the database dbt builds into. `revetl build` keeps its staging copy between
    builds and publishes every relation in it (revetl/dbt.py), so without this a table of a model
    that no longer exists would be copied into the warehouse on every build, stale. Through the
    adapter, so it works on any engine.
  -#}
  {%- if execute -%}
    {%- for name in ['identity_sightings', 'identity_occurrences', 'identity_nodes', 'identity_edges',
                     'profiled_events_without_user_id'] -%}
      {%- set relation = adapter.get_relation(database=this.database, schema=this.schema, identifier=name) -%}
      {%- if relation is not none -%}
        {%- do adapter.drop_relation(relation) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{% endmacro %}
