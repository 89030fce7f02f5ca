{% test unique_combination(model, columns) %}
  {#- Fails with every combination of `columns` that occurs more than once. -#}
  select {{ columns | join(', ') }}, count(*) as occurrences
  from {{ model }}
  group by {{ columns | join(', ') }}
  having count(*) > 1
{% endtest %}

{% test disjoint_from(model, other, columns) %}
  {#- Fails with every row of `model` whose `columns` also appear in `other`. -#}
  select {{ columns | join(', ') }} from {{ model }}
  intersect
  select {{ columns | join(', ') }} from {{ other }}
{% endtest %}
