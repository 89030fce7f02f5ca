{#-
  Connected components by randomised contraction (Bögeholz, Brand, Todor: "In-database connected
  component analysis", arXiv 1802.09478).

  Each round maps every vertex to the neighbour (or itself) with the smallest random hash, then
  rewrites the edges through that map and drops self-loops. Every round shrinks the graph by a
  constant factor in expectation, so the number of rounds grows with log(n) whatever the shape of
  the graph; plain min-label propagation needs one round per link of the longest chain instead.
  A vertex only ever maps to a vertex of its own component, so the result is exact; the hash only
  decides how fast it converges.

  Called from a model's body. It runs the rounds with run_query into work tables named after the
  model, and returns a SELECT of (node, component) for every node in `edges`; the model must drop
  the work tables with the post-hook `drop_connected_components_work()`.

  edges: SQL giving (src, dst) integer node ids, one row per undirected edge.
-#}
{% macro connected_components(edges, max_rounds=64) %}
  {%- set base = this.identifier ~ '__cc' -%}
  {%- if not execute -%}
    {{ return("select cast(null as bigint) as node, cast(null as bigint) as component") }}
  {%- endif -%}
  {%- set state = namespace(rounds=0, done=false) -%}
  {% do drop_connected_components_work(rounds=max_rounds, run=true) %}

  {#- Round 0: both directions of every edge, no self-loops, no duplicates. -#}
  {% do run_query(
    "create table " ~ _cc_name(base ~ '_e0') ~ " as
     select distinct src, dst from (
       select src, dst from (" ~ edges ~ ") as given
       union all
       select dst, src from (" ~ edges ~ ") as given
     ) as both_ways where src <> dst") %}

  {%- for round in range(1, max_rounds + 1) -%}
    {%- if not state.done -%}
      {%- set seed = (round * 2654435761) % 4294967296 -%}
      {%- set edges_before = _cc_name(base ~ '_e' ~ (round - 1)) -%}
      {%- set mapping = _cc_name(base ~ '_m' ~ round) -%}
      {%- set edges_after = _cc_name(base ~ '_e' ~ round) -%}
      {#- Every vertex with an edge picks the smallest-hash vertex among itself and its neighbours. -#}
      {% do run_query(
        "create table " ~ mapping ~ " as
         select v, arg_min(n, " ~ hash64('n', seed) ~ ") as r from (
           select src as v, dst as n from " ~ edges_before ~ "
           union all
           select distinct src as v, src as n from " ~ edges_before ~ "
         ) as candidates group by v") %}
      {% do run_query(
        "create table " ~ edges_after ~ " as
         select distinct a.r as src, b.r as dst
         from " ~ edges_before ~ " as e
         join " ~ mapping ~ " as a on e.src = a.v
         join " ~ mapping ~ " as b on e.dst = b.v
         where a.r <> b.r") %}
      {% do run_query("drop table " ~ edges_before) %}
      {%- set remaining = run_query("select count(*) from " ~ edges_after).columns[0].values()[0] -%}
      {%- set state.rounds = round -%}
      {%- if remaining == 0 -%}{%- set state.done = true -%}{%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if not state.done -%}
    {{ exceptions.raise_compiler_error("connected components did not converge in " ~ max_rounds ~ " rounds") }}
  {%- endif -%}
  {{ log("connected components: " ~ state.rounds ~ " rounds", info=false) }}

  {#- Compose the round maps backwards: a vertex's component is where its chain of maps ends. -#}
  {%- for round in range(state.rounds - 1, 0, -1) -%}
    {%- set mapping = _cc_name(base ~ '_m' ~ round) -%}
    {%- set later = _cc_name(base ~ '_m' ~ (round + 1)) -%}
    {% do run_query(
      "create table " ~ _cc_name(base ~ '_f') ~ " as
       select m.v, coalesce(f.r, m.r) as r
       from " ~ mapping ~ " as m left join " ~ later ~ " as f on m.r = f.v") %}
    {% do run_query("drop table " ~ mapping) %}
    {% do run_query("drop table " ~ later) %}
    {% do run_query("alter table " ~ _cc_name(base ~ '_f') ~ " rename to " ~ adapter.quote(base ~ '_m' ~ round)) %}
  {%- endfor -%}
  {#- Kept after the run (the post-hook leaves it): how many rounds this build needed. -#}
  {% do run_query(
    "create or replace table " ~ _cc_name(base ~ '_stats') ~ " as select " ~ state.rounds ~ " as rounds") %}
  {{ return("select v as node, r as component from " ~ _cc_name(base ~ '_m1')) }}
{% endmacro %}

{% macro _cc_name(identifier) -%}
  {{- return(adapter.quote(this.schema) ~ '.' ~ adapter.quote(identifier)) -}}
{%- endmacro %}

{% macro drop_connected_components_work(rounds=64, run=false) %}
  {#- Drop every work table of this model's connected components (post-hook, and before a run). -#}
  {%- set base = this.identifier ~ '__cc' -%}
  {%- set names = ['_f'] -%}
  {%- for round in range(0, rounds + 1) -%}
    {%- do names.append('_e' ~ round) -%}
    {%- do names.append('_m' ~ round) -%}
  {%- endfor -%}
  {%- set statements = [] -%}
  {%- for suffix in names -%}
    {%- do statements.append("drop table if exists " ~ _cc_name(base ~ suffix)) -%}
  {%- endfor -%}
  {%- if run -%}
    {%- for statement in statements -%}{% do run_query(statement) %}{%- endfor -%}
  {%- else -%}
    {{- statements | join(";\n") -}}
  {%- endif -%}
{% endmacro %}
