{#- Identity helpers (DESIGN 3, rules 1-2). -#}

{% macro blocked_identifier_values() -%}
  {#- Values that never become identifiers, compared lower-cased and trimmed. -#}
  {%- set builtin = ['', 'null', 'undefined', 'none', 'nil', '0', 'anonymous',
                     '00000000-0000-0000-0000-000000000000'] -%}
  {%- set extra = var('blocked_identifier_values', []) | map('lower') | map('trim') | list -%}
  {{- return(builtin + extra) -}}
{%- endmacro %}

{% macro clean_identifier(expr) -%}
  {#- expr as an identifier, or NULL when it is missing, blank or blocked. -#}
  case when {{ expr }} is null
         or lower(trim({{ expr }})) in (
           {%- for value in blocked_identifier_values() -%}
             {{ "'" ~ (value | replace("'", "''")) ~ "'" }}{{ ", " if not loop.last }}
           {%- endfor -%})
       then null else {{ expr }} end
{%- endmacro %}

{% macro clean_email(expr) -%}
  {#- Emails and extra identifiers are compared lower-cased and trimmed. -#}
  {{ clean_identifier('lower(trim(' ~ expr ~ '))') }}
{%- endmacro %}

{% macro identifier_priority(type_expr) -%}
  {#- Which identifier names a profile: a user_id if it has one, then email, extras, anonymous_id. -#}
  case {{ type_expr }} when 'user_id' then 0 when 'email' then 1 when 'anonymous_id' then 3 else 2 end
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
