{#-
  Connected components by randomised contraction (Bögeholz, Brand, Todor: "In-database connected
  component analysis", arXiv 1802.09478).

  Each round gives every vertex a fresh random priority; a vertex with a neighbour of smaller
  priority maps to the smallest such neighbour, then one pointer jump (it goes where that
  neighbour went). The edges are rewritten through the map, self-loops and duplicates dropped.
  Every round shrinks the graph by a constant factor in expectation, so the number of rounds grows
  with log(n) whatever the shape of the graph; plain min-label propagation needs one round per
  link of the longest chain instead. A vertex only ever maps to a vertex of its own component, so
  the result is exact; the priorities only decide how fast it converges.

  The priority of node n in round k is cc_priority(n, seed_k): a 31-bit hash in the high bits and
  n itself in the low 32 bits, so one min() over bigints picks the neighbour (a total order, no
  ties) and `& 4294967295` gives its id back. Node ids must be in [0, 2^32); this is checked.
  Each round looks at every edge once, oriented from its higher-priority end to its lower one.

  Called from a model's body. It runs each round in one run_query round trip, into temporary
  tables, and returns a SELECT of (node, component) such that the component of node n is
  coalesce(component, n): n is absent when it has no edge, or when it is the vertex its whole
  component contracted into. `component` is always a node of the component (not necessarily the
  smallest). The model drops the work tables with the post-hook
  `drop_connected_components_work()`; `<model>__cc_stats` (rounds, seconds) is kept.

  edges: SQL giving (src, dst) integer node ids, one row per undirected edge (either direction;
  duplicates and self-loops are harmless).
-#}
{% macro connected_components(edges, max_rounds=64) %}
  {%- if not execute -%}
    {{ return("select cast(null as bigint) as node, cast(null as bigint) as component") }}
  {%- endif -%}
  {%- set base = this.identifier ~ '__cc' -%}
  {%- set mask = 4294967295 -%}
  {%- set started = modules.datetime.datetime.now() -%}
  {%- set state = namespace(rounds=0, done=false, current='(select src, dst from (' ~ edges ~ ') as given where src <> dst)') -%}
  {%- do drop_connected_components_work() -%}

  {%- for round in range(1, max_rounds + 1) -%}
    {%- if not state.done -%}
      {%- set seed = (round * 2654435761) % 4294967296 -%}
      {%- set picked = work_table(base ~ '_p' ~ round) -%}
      {%- set mapping = work_table(base ~ '_m' ~ round) -%}
      {%- set edges_after = work_table(base ~ '_e' ~ round) -%}
      {%- set statements -%}
        {#- Every vertex that has a neighbour of smaller priority picks the smallest; the others
            (local minima) stay themselves and are left out of the map. -#}
        {{ create_work_table(picked) }}
        select hi as v, min(lo) & {{ mask }} as r
        from (
            select greatest(src_priority, dst_priority) & {{ mask }} as hi, least(src_priority, dst_priority) as lo
            from (
                select {{ cc_priority('e.src', seed) }} as src_priority, {{ cc_priority('e.dst', seed) }} as dst_priority
                from {{ state.current }} as e
            ) as prioritized
        ) as oriented
        group by hi;
        {#- One pointer jump: a vertex goes where its pick went (same component, fewer vertices left). -#}
        {{ create_work_table(mapping) }}
        select p.v, coalesce(q.r, p.r) as r
        from {{ picked }} as p left join {{ picked }} as q on q.v = p.r;
        {{ drop_work_table(picked) }};
        {#- The contracted graph: edges between the images, no self-loops. Round 1 keeps parallel
            edges (few when the input has no duplicates; not worth a pass), later rounds drop them. -#}
        {{ create_work_table(edges_after) }}
        select {{ 'distinct' if round > 1 }} least(a, b) as src, greatest(a, b) as dst
        from (
            select coalesce(ma.r, e.src) as a, coalesce(mb.r, e.dst) as b
            from {{ state.current }} as e
            left join {{ mapping }} as ma on ma.v = e.src
            left join {{ mapping }} as mb on mb.v = e.dst
        ) as relabelled
        where a <> b;
        {%- if round > 1 %}
        {{ drop_work_table(state.current) }};
        {%- endif %}
        select
            (select count(*) from {{ edges_after }}) as remaining,
            {%- if round == 1 %}
            (select count(*) from {{ state.current }} as e
             where e.src < 0 or e.dst < 0 or e.src > {{ mask }} or e.dst > {{ mask }}) as out_of_range
            {%- else %}
            0 as out_of_range
            {%- endif %}
      {%- endset -%}
      {%- set result = run_statements(statements) -%}
      {%- if result.columns[1].values()[0] > 0 -%}
        {{ exceptions.raise_compiler_error("connected components: node ids must be in [0, 2^32)") }}
      {%- endif -%}
      {%- set state.current = edges_after -%}
      {%- set state.rounds = round -%}
      {%- if result.columns[0].values()[0] == 0 -%}{%- set state.done = true -%}{%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if not state.done -%}
    {{ exceptions.raise_compiler_error("connected components did not converge in " ~ max_rounds ~ " rounds") }}
  {%- endif -%}
  {{ log("connected components: " ~ state.rounds ~ " rounds", info=false) }}

  {#- Compose the round maps backwards into f_k: where a vertex of round k's graph ends. A vertex
      of round k+1's graph is an image of round k's map or a local minimum of round k (then it is
      in f_(k+1) only). A vertex in no map is the end of its own chain: it names its component. -#}
  {%- set statements = [drop_work_table(state.current)] -%}
  {%- set later = namespace(name=work_table(base ~ '_m' ~ state.rounds)) -%}
  {%- for round in range(state.rounds - 1, 1, -1) -%}
    {%- set mapping = work_table(base ~ '_m' ~ round) -%}
    {%- set composed = work_table(base ~ '_f' ~ round) -%}
    {%- do statements.append(create_work_table(composed) ~ " " ~ _cc_compose(mapping, later.name)) -%}
    {%- do statements.append(drop_work_table(mapping)) -%}
    {%- do statements.append(drop_work_table(later.name)) -%}
    {%- set later.name = composed -%}
  {%- endfor -%}
  {% do run_statements(statements | join(";\n")) %}
  {#- Kept after the run: how many rounds this build needed, and how long they and the composition
      took (the model then names the components and writes its table). -#}
  {%- set elapsed = modules.datetime.datetime.now() - started -%}
  {% do run_statements(create_or_replace_table(
    adapter.quote(this.schema) ~ "." ~ adapter.quote(base ~ '_stats'),
    "select " ~ state.rounds ~ " as rounds, cast(" ~ elapsed.total_seconds() ~ " as " ~ type_double() ~ ") as seconds")) %}
  {%- set first = work_table(base ~ '_m1') -%}
  {%- if state.rounds == 1 -%}
    {{ return("select v as node, r as component from " ~ first) }}
  {%- else -%}
    {{ return("select v as node, r as component from (" ~ _cc_compose(first, later.name) ~ ") as composed") }}
  {%- endif -%}
{% endmacro %}

{% macro _cc_compose(mapping, later) -%}
  {#- mapping followed by later, plus later's own vertices that mapping leaves alone. -#}
  select m.v, coalesce(f.r, m.r) as r
  from {{ mapping }} as m left join {{ later }} as f on f.v = m.r
  union all
  select f.v, f.r
  from {{ later }} as f
  where not exists (select 1 from {{ mapping }} as m where m.v = f.v)
{%- endmacro %}

{% macro cc_priority(expr, seed) -%}
  {{ return(adapter.dispatch('cc_priority', 'revetl')(expr, seed)) }}
{%- endmacro %}

{% macro duckdb__cc_priority(expr, seed) -%}
  {#- hash() is an unsigned 64-bit integer: its top 31 bits. -#}
  ((cast(hash({{ expr }}, {{ seed }}) >> 33 as bigint) << 32) | {{ expr }})
{%- endmacro %}

{% macro postgres__cc_priority(expr, seed) -%}
  {#- hashint8extended() is a signed 64-bit integer (>> keeps its sign): 31 of its bits. -#}
  ((((hashint8extended({{ expr }}, {{ seed }}) >> 33) & 2147483647) << 32) | {{ expr }})
{%- endmacro %}

{% macro drop_connected_components_work() %}
  {#- Drop this model's remaining work tables (post-hook; also before the first round). They are
      temporary, so they would go with the connection anyway; this frees their memory now. Runs the
      drops itself (Spark takes one statement at a time) and leaves the hook empty. -#}
  {%- if not execute -%}{{ return('') }}{%- endif -%}
  {%- set statements = [] -%}
  {%- for name in work_table_names(this.identifier ~ '__cc_') -%}
    {%- do statements.append(drop_work_table(work_table(name), if_exists=true)) -%}
  {%- endfor -%}
  {%- if statements %}{% do run_statements(statements | join(";\n")) %}{% endif -%}
  {{- return('') -}}
{% endmacro %}
