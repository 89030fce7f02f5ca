{#- Identity helpers (DESIGN 3, rules 1-2). -#}

{% macro blank_character_class() -%}
  {#-
    The characters an identifier is trimmed of, and made only of which it is blank (README "Identity
    resolution", rule 2), as an RE2 character class: Python's whitespace (Unicode White_Space:
    U+0009-U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F,
    U+3000; and the information separators U+001C-U+001F) and six invisible characters (U+180E,
    U+200B-U+200D, U+2060, U+FEFF). revetl/identifiers.py holds the same set as BLANK, and
    tests/test_identifiers.py checks that the two agree on every character. An explicit set because
    DuckDB's trim() takes spaces only and RE2's \s ASCII whitespace only.
  -#}
  {{- return('[\\x{9}-\\x{D}\\x{1C}-\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{180E}\\x{2000}-\\x{200D}\\x{2028}\\x{2029}'
             ~ '\\x{202F}\\x{205F}\\x{2060}\\x{3000}\\x{FEFF}]') -}}
{%- endmacro %}

{% macro trim_blank(expr) -%}
  {{ return(adapter.dispatch('trim_blank', 'revetl')(expr)) }}
{%- endmacro %}

{% macro default__trim_blank(expr) -%}
  {#- expr without blank characters at either end. One RE2 pass: trim(expr, characters) reads its
      character list again on every row, about 15 times slower. -#}
  {%- set blank = blank_character_class() -%}
  regexp_replace({{ expr }}, '^{{ blank }}+|{{ blank }}+$', '', 'g')
{%- endmacro %}

{% macro blocked_identifier_values() -%}
  {#- SQL expressions of the values that never become identifiers, compared lower-cased and trimmed of
      blank characters: the built-in ones as literals, those of var blocked_identifier_values
      trimmed and lower-cased by the same SQL (constant expressions, folded once by the engine). -#}
  {%- set values = [] -%}
  {%- for value in ['', 'null', 'undefined', 'none', 'nil', '0', 'anonymous', '00000000-0000-0000-0000-000000000000'] -%}
    {%- do values.append("'" ~ value ~ "'") -%}
  {%- endfor -%}
  {%- for value in var('blocked_identifier_values', []) -%}
    {%- do values.append('lower(' ~ trim_blank("'" ~ (value | string | replace("'", "''")) ~ "'") ~ ')') -%}
  {%- endfor -%}
  {{- return(values) -}}
{%- endmacro %}

{% macro clean_identifier(expr) -%}
  {#- expr as an identifier (unchanged), or NULL when it is missing, blank or blocked once lower-cased
      and trimmed of blank characters. -#}
  case when {{ expr }} is null
         or lower({{ trim_blank(expr) }}) in ({{ blocked_identifier_values() | join(', ') }})
       then null else {{ expr }} end
{%- endmacro %}

{% macro clean_email(expr) -%}
  {#- Emails and extra identifiers are compared lower-cased and trimmed of blank characters. -#}
  {{ clean_identifier('lower(' ~ trim_blank(expr) ~ ')') }}
{%- endmacro %}

{% macro identifier_priority(type_expr) -%}
  {#- Which identifier names a profile: a user_id if it has one, then email, extras, anonymous_id. -#}
  case {{ type_expr }} when 'user_id' then 0 when 'email' then 1 when 'anonymous_id' then 3 else 2 end
{%- endmacro %}

{% macro identifier_name_key(type_expr='identifier_type', value_expr='identifier_value') -%}
  {#- A profile is named after its identifier with the smallest key; profile_id = md5(key). -#}
  {{ identifier_priority(type_expr) }} || {{ type_expr }} || ':' || {{ value_expr }}
{%- endmacro %}

{% macro trait_identifiers() -%}
  {#- Identifier types read from traits: email, then the extra ones (var extra_identifiers). -#}
  {{- return(['email'] + var('extra_identifiers', [])) -}}
{%- endmacro %}

{% macro event_identifier_columns(prefix='') -%}
  {#-
    The identifiers of one row of `events` (DESIGN 3, rules 1-3), blocked values as NULL:
    user_id, anonymous_id, previous_id (alias calls only), and for each trait identifier KEY
    KEY_from_traits (not on group calls: their traits describe the group) and KEY_from_context.
  -#}
  {{ clean_identifier('user_id') }} as {{ prefix }}user_id,
  {{ clean_identifier('anonymous_id') }} as {{ prefix }}anonymous_id,
  {{ clean_identifier("case when type = 'alias' then previous_id end") }} as {{ prefix }}previous_id
  {%- for key in trait_identifiers() %},
  {{ clean_email("case when type <> 'group' then " ~ json_text('traits', [key]) ~ " end") }} as {{ prefix }}{{ key }}_from_traits,
  {#- Most events carry a context without traits: skip parsing those. Without the text "traits"
      (and without a \u escape that could spell it) the key cannot be there. -#}
  {{ clean_email("case when " ~ text_contains('context', '"traits"') ~ " or " ~ text_contains('context', '\\u')
                 ~ " then " ~ json_text('context', ['traits', key]) ~ " end") }} as {{ prefix }}{{ key }}_from_context
  {%- endfor %}
{%- endmacro %}

{% macro event_identifier_names() -%}
  {%- set names = ['user_id', 'anonymous_id', 'previous_id'] -%}
  {%- for key in trait_identifiers() -%}
    {%- do names.append(key ~ '_from_traits') -%}
    {%- do names.append(key ~ '_from_context') -%}
  {%- endfor -%}
  {{- return(names) -}}
{%- endmacro %}

{% macro json_text(expr, keys) -%}
  {{ return(adapter.dispatch('json_text', 'revetl')(expr, keys)) }}
{%- endmacro %}

{% macro default__json_text(expr, keys) -%}
  {#- The string at keys (a list of object keys) inside the JSON text expr, or NULL when there is none
      or the value there is not a JSON string: json_extract_string alone would turn false, 42 or
      {"a":1} into text, and `false` would be an email two strangers share. -#}
  {%- set path = [] -%}
  {%- for key in keys -%}{%- do path.append('."' ~ (key | replace('"', '\\"') | replace("'", "''")) ~ '"') -%}{%- endfor -%}
  case when json_type({{ expr }}, '${{ path | join('') }}') = 'VARCHAR'
       then json_extract_string({{ expr }}, '${{ path | join('') }}') end
{%- endmacro %}

{% macro text_contains(expr, text) -%}
  (strpos({{ expr }}, '{{ text | replace("'", "''") }}') > 0)
{%- endmacro %}

{% macro hash64(expr, seed) -%}
  {{ return(adapter.dispatch('hash64', 'revetl')(expr, seed)) }}
{%- endmacro %}

{% macro default__hash64(expr, seed) -%}
  hash({{ expr }}, {{ seed }})
{%- endmacro %}

{% macro as_of() -%}
  {#- The "as of" time trait windows end at: var('as_of') or now, as a UTC TIMESTAMP. -#}
  {%- if var('as_of', none) -%}
    cast('{{ var("as_of") }}' as timestamp)
  {%- else -%}
    cast(timezone('UTC', current_timestamp) as timestamp)
  {%- endif -%}
{%- endmacro %}

{% macro fast_unique_string_writes(reset=false) -%}
  {{ return(adapter.dispatch('fast_unique_string_writes', 'revetl')(reset)) }}
{%- endmacro %}

{% macro default__fast_unique_string_writes(reset) -%}
  {#- DuckDB, as a model's pre-hook and (reset=true) post-hook: its combined dictionary + FSST string
      compression spends more time than it saves on a column of distinct hashes (profile_id: md5
      hex), about half of writing identity_graph at 10M identifiers. Its other compressions stay on.
      DuckDB only has this setting database-wide, so a model built beside it in the same run also
      skips that one method until the post-hook; it changes how strings are stored, never what. -#}
  {%- if reset -%}
    reset disabled_compression_methods
  {%- else -%}
    set disabled_compression_methods = 'dict_fsst'
  {%- endif -%}
{%- endmacro %}
