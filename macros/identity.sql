{#- Identity helpers (DESIGN 3, rules 1-2). -#}

{% macro blank_characters() -%}
  {#-
    The characters an identifier is trimmed of, and made only of which it is blank (README "Identity
    resolution", rule 2), as ranges of code points (hex): Python's whitespace (Unicode White_Space:
    U+0009-U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F,
    U+3000; and the information separators U+001C-U+001F) and six invisible characters (U+180E,
    U+200B-U+200D, U+2060, U+FEFF). revetl/identifiers.py holds the same set as BLANK, and
    tests/test_identifiers.py checks that the two agree on every character. An explicit set because
    DuckDB's trim() takes spaces only and RE2's \s ASCII whitespace only.
  -#}
  {{- return([('0009', '000D'), ('001C', '0020'), ('0085', '0085'), ('00A0', '00A0'), ('1680', '1680'),
              ('180E', '180E'), ('2000', '200D'), ('2028', '2029'), ('202F', '202F'), ('205F', '205F'),
              ('2060', '2060'), ('3000', '3000'), ('FEFF', 'FEFF')]) -}}
{%- endmacro %}

{% macro _character_class(before, after='') -%}
  {#- blank_characters() as a regular expression's character class, each code point written as
      before ~ hex ~ after. -#}
  {%- set parts = [] -%}
  {%- for low, high in blank_characters() -%}
    {%- set first = before ~ low ~ after -%}
    {%- do parts.append(first if low == high else first ~ '-' ~ before ~ high ~ after) -%}
  {%- endfor -%}
  {{- return('[' ~ (parts | join('')) ~ ']') -}}
{%- endmacro %}

{% macro trim_blank(expr) -%}
  {#- expr without blank characters at either end, in one regular expression pass: trim(expr,
      characters) reads its character list again on every row, about 15 times slower. -#}
  {{ return(adapter.dispatch('trim_blank', 'revetl')(expr)) }}
{%- endmacro %}

{% macro duckdb__trim_blank(expr) -%}
  {#- RE2 writes a code point as \x{hex}. -#}
  {%- set blank = _character_class('\\x{', '}') -%}
  regexp_replace({{ expr }}, '^{{ blank }}+|{{ blank }}+$', '', 'g')
{%- endmacro %}

{% macro postgres__trim_blank(expr) -%}
  {#- PostgreSQL's regular expressions (ARE) write a code point as \uXXXX. -#}
  {%- set blank = _character_class('\\u') -%}
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
    {%- do values.append('lower(' ~ trim_blank(string_literal(value | string)) ~ ')') -%}
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

{% macro text_contains(expr, text) -%}
  (position({{ string_literal(text) }} in {{ expr }}) > 0)
{%- endmacro %}

{% macro as_of() -%}
  {#- The "as of" time trait windows end at: var('as_of') or now, as a UTC TIMESTAMP. -#}
  {%- if var('as_of', none) -%}
    cast('{{ var("as_of") }}' as timestamp)
  {%- else -%}
    {{ utc_now() }}
  {%- endif -%}
{%- endmacro %}
