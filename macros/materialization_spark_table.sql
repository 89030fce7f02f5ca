{#-
  The table materialization on Spark (dbt picks a project's over its adapter's). dbt-spark's own drops
  a Parquet table before it writes the new one (only Delta and Iceberg can replace a table in one step),
  so a model that fails leaves no table at all. Here the new table is written beside the old one
  (`<name>__revetl_new`) and swapped in only once it is complete: a model that fails, or is skipped
  after a failure upstream, keeps its previous table, as on PostgreSQL (revetl/warehouse/dbt.py). The
  swap is a drop and a rename; with the default embedded metastore no other process can read
  between the two (one process at a time, warehouse/spark.py).
-#}
{% materialization table, adapter='spark' %}
  {%- set identifier = model['alias'] -%}
  {%- set old_relation = adapter.get_relation(database=database, schema=schema, identifier=identifier) -%}
  {%- set target_relation = api.Relation.create(identifier=identifier, schema=schema, database=database,
                                                type='table') -%}
  {%- set new_relation = api.Relation.create(identifier=identifier ~ '__revetl_new', schema=schema,
                                             database=database, type='table') -%}

  {{ run_hooks(pre_hooks) }}
  {% do adapter.drop_relation(new_relation) %}
  {%- call statement('main') -%}
    {{ create_table_as(False, new_relation, compiled_code) }}
  {%- endcall -%}
  {% if old_relation is not none %}
    {% do adapter.drop_relation(old_relation) %}
  {% endif %}
  {% do adapter.rename_relation(new_relation, target_relation) %}
  {% do persist_docs(target_relation, model) %}
  {{ run_hooks(post_hooks) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
