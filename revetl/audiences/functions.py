"""The functions an audience may call: an allowlist, by family, and why each family is safe.

An audience is analyst SQL that revetl runs on the warehouse and whose result it sends to SaaS
tools, so the check is deny by default: a function not listed here is a problem, whatever it is.
A function is listed when its result depends only on its arguments (and, for the clock family, on
the time), it reads no file, network, setting, variable, sequence or catalog, and it changes
nothing. Names are DuckDB's (2.0), as the parser sees them; tests/test_audience_sandbox.py checks
every name against `duckdb_functions()`: it exists, is not volatile nor has side effects, and no
table function outside TABLE_FUNCTIONS is listed.

Deliberately left out, with the reason an analyst is told: readers of files and databases
(`read_*`, `*_scan`, `glob`, `query`, `json_execute_serialized_sql`, ...), the engine's own state
(`duckdb_*`, `pragma_*`, `current_setting`, `getvariable`, `version`, `pg_*`, ...), side effects
and session state (`nextval`, `setseed`, `write_log`, `pg_sleep`, ...), randomness (`random`,
`uuid`: members would change on every run and churn the destination), functions that call a
function named in a string (`list_aggregate`), and DuckDB internals (`__internal_*`, `stats`, ...).
"""

from __future__ import annotations

import re

__all__ = ["FUNCTIONS", "TABLE_FUNCTIONS", "function_problem", "table_function_problem"]


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Operators, as DuckDB names them (`a || b` calls `||`, `a LIKE b` calls `~~`): arithmetic, bits,
# comparison, text and list matching. They compute from their operands.
OPERATORS = _names("""
    + - * / // % ** ^ & | << >> ~ = != < <= > >= || ~~ !~~ ~~* !~~* ~~~ ^@ @ ->> <-> <=> <@ @> &&
""")

# Conditionals and types: choose between or describe values already in hand.
CONDITIONAL = _names("if nullif greatest least typeof")

# Numbers: arithmetic and trigonometry, rounding, bits.
NUMERIC = _names("""
    abs acos acosh add asin asinh atan atan2 atanh binom bit_count bit_position cbrt ceil ceiling cos cosh
    cot degrees divide even exp factorial fdiv floor fmod gamma gcd get_bit greatest_common_divisor isfinite
    isinf isnan lcm least_common_multiple lgamma ln log log10 log2 mod multiply nextafter pi pow power radians
    round round_even roundbankers set_bit sign signbit sin sinh sqrt subtract tan tanh to_base trunc xor
""")

# Text: case, padding, slicing, searching, splitting, encoding; text similarity.
STRING = _names("""
    ascii base64 bin bit_length char_length character_length chr concat concat_ws contains decode encode
    ends_with format from_base64 from_binary from_hex hex ilike_escape instr lcase left left_grapheme len
    length length_grapheme like_escape lower lpad ltrim nfc_normalize not_ilike_escape not_like_escape
    octet_length ord overlay position prefix printf repeat replace reverse right right_grapheme rpad rtrim
    split split_part starts_with str_split string_split string_to_array strip_accents strlen strpos substr
    substring substring_grapheme suffix to_base64 to_binary to_hex translate trim ucase unbin unhex unicode
    upper url_decode url_encode
    damerau_levenshtein editdist3 hamming jaccard jaro_similarity jaro_winkler_similarity levenshtein
    mismatches
""")

# Regular expressions over text values (RE2: no backtracking blow-ups).
REGEX = _names("""
    regexp_escape regexp_extract regexp_extract_all regexp_full_match regexp_matches regexp_replace
    regexp_split_to_array regexp_split_to_table str_split_regex string_split_regex
""")

# Hashes: the stable way to sample (`hash(user_id) % 100 < 10` is the same 10% on every run).
HASHING = _names("hash md5 md5_number md5_number_lower md5_number_upper sha1 sha256")

# Dates and times: parts, arithmetic, truncation, formatting and parsing of the values given.
DATETIME = _names("""
    age century date_add date_diff date_part date_sub date_trunc datediff datepart datesub datetrunc day
    dayname dayofmonth dayofweek dayofyear days_in_month decade epoch epoch_ms epoch_ns epoch_us era hour
    isodow isoyear julian last_day make_date make_time make_timestamp make_timestamp_ms make_timestamp_ns
    make_timestamptz microsecond millennium millisecond minute month monthname nanosecond normalized_interval
    quarter second strftime strptime time_bucket timezone timezone_hour timezone_minute to_centuries to_days
    to_decades to_hours to_microseconds to_millennia to_milliseconds to_minutes to_months to_quarters
    to_seconds to_timestamp to_weeks to_years try_strptime week weekday weekofyear year yearweek
""")

# The clock: reads the time and nothing else. `as_of()` is better (the same build gives the same
# members whenever the audience runs), but "signed up in the last 7 days of now" is not a leak.
CLOCK = _names("""
    now today current_date get_current_time get_current_timestamp current_localtime current_localtimestamp
    transaction_timestamp ago
""")

# Lists and arrays: build, slice, search, sort, set operations, lambdas over the elements, and the
# list forms of aggregates. `[x for x in l]`, `[1, 2]` and UNPIVOT are parsed into these.
LIST = _names("""
    apply array_append array_apply array_cat array_concat array_contains array_cosine_distance
    array_cosine_similarity array_cross_product array_distance array_distinct array_dot_product array_extract
    array_filter array_grade_up array_has array_has_all array_has_any array_indexof array_inner_product
    array_intersect array_length array_negative_dot_product array_negative_inner_product array_pop_back
    array_pop_front array_position array_prepend array_push_back array_push_front array_reduce array_resize
    array_reverse array_reverse_sort array_select array_slice array_sort array_to_string
    array_to_string_comma_default array_transform array_unique array_value array_where array_zip filter
    flatten generate_series generate_subscripts grade_up list_any_value list_append list_apply
    list_approx_count_distinct list_avg list_bit_and list_bit_or list_bit_xor list_bool_and list_bool_or
    list_cat list_concat list_contains list_cosine_distance list_cosine_similarity list_count list_distance
    list_distinct list_dot_product list_element list_entropy list_extract list_filter list_first list_grade_up
    list_has list_has_all list_has_any list_histogram list_indexof list_inner_product list_intersect
    list_kurtosis list_kurtosis_pop list_last list_mad list_max list_median list_min list_mode
    list_negative_dot_product list_negative_inner_product list_pack list_position list_prepend list_product
    list_reduce list_resize list_reverse list_reverse_sort list_select list_sem list_skewness list_slice
    list_sort list_stddev_pop list_stddev_samp list_string_agg list_sum list_transform list_unique
    list_value list_var_pop list_var_samp list_where list_zip range reduce unnest unpivot_list
""")

# Structs, maps and unions: build and take apart nested values (`{'a': 1}` is struct_pack).
NESTED = _names("""
    row struct_concat struct_contains struct_extract struct_extract_at struct_has struct_indexof struct_insert
    struct_keys struct_pack struct_position struct_update struct_values union_extract union_tag union_value
    cardinality element_at map map_concat map_contains map_contains_entry map_contains_value map_entries
    map_extract map_extract_value map_from_entries map_keys map_values
""")

# JSON: the events' properties, traits and context are JSON text; extract, test, build and
# reshape JSON values. (json_serialize_sql and json_execute_serialized_sql are not JSON functions
# but SQL ones, and are not here.)
JSON = _names("""
    array_to_json from_json from_json_strict json json_array json_array_length json_contains json_exists
    json_extract json_extract_path json_extract_path_text json_extract_string json_group_array
    json_group_object json_group_structure json_insert json_keys json_merge_patch json_object json_pretty
    json_quote json_remove json_replace json_set json_strip_nulls json_structure json_transform
    json_transform_strict json_type json_valid json_value row_to_json to_json
""")

# Aggregates: summarize the rows of a group.
AGGREGATE = _names("""
    any_value approx_count_distinct approx_quantile approx_top_k arbitrary arg_max arg_max_null
    arg_max_nulls_last arg_min arg_min_null arg_min_nulls_last argmax argmin array_agg avg bit_and bit_or
    bit_xor bitstring_agg bool_and bool_or corr count count_if count_star countif covar_pop covar_samp
    entropy favg first fsum geomean geometric_mean group_concat histogram histogram_exact kahan_sum kurtosis
    kurtosis_pop last list listagg mad max max_by mean median min min_by mode product quantile quantile_cont
    quantile_disc regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy
    regr_syy reservoir_quantile sem skewness stddev stddev_pop stddev_samp string_agg sum sumkahan var_pop
    var_samp variance wavg weighted_avg
""")

# Window functions: rank and look around the rows of a partition.
WINDOW = _names("""
    cume_dist dense_rank fill first_value lag last_value lead nth_value ntile percent_rank rank rank_dense
    row_number
""")

FUNCTIONS = (
    OPERATORS | CONDITIONAL | NUMERIC | STRING | REGEX | HASHING | DATETIME | CLOCK | LIST | NESTED | JSON
    | AGGREGATE | WINDOW
)

# Table functions an audience may read from (in FROM): they generate rows from their arguments.
TABLE_FUNCTIONS = _names("unnest range generate_series json_each json_tree")

# For the message only: what a refused name does, so the analyst knows why.
_OUTSIDE = re.compile(
    r"read_.*|.*_scan|.*_attach|.*_query|.*_execute|.*_metadata|.*_schema|glob|query|query_table|sniff_csv"
    r"|st_read.*|json_execute_serialized_sql|json_serialize_sql|json_deserialize_sql|json_serialize_plan"
)
_ENGINE = re.compile(
    r"duckdb_.*|pragma_.*|current_.*|getvariable|version|which_secret|txid_current|pg_.*|has_.*_privilege"
    r"|.*_description|in_search_path|get_block_size|enum_.*|index_key|format_type|format_pg_type|session_user|user"
)
_RANDOM = re.compile(r"random|setseed|uuid.*|gen_random_uuid")


def function_problem(name: str) -> str | None:
    """Why `name()` may not be called in an audience, or None when it may (as a scalar, aggregate or window)."""
    name = name.lower()
    if name in FUNCTIONS:
        return None
    return _refusal(name)


def table_function_problem(name: str) -> str | None:
    """Why `FROM name(...)` may not be read in an audience, or None when it may."""
    name = name.lower()
    if name in TABLE_FUNCTIONS:
        return None
    if name in FUNCTIONS:
        allowed = ", ".join(sorted(TABLE_FUNCTIONS))
        return f"`{name}()` is not a table function an audience may read from (those are: {allowed})"
    return _refusal(name)


def _refusal(name: str) -> str:
    if _OUTSIDE.fullmatch(name):
        return (
            f"`{name}()` reads outside the warehouse (files, other databases, or SQL in a string); "
            "an audience reads only warehouse models, through ref()"
        )
    if _ENGINE.fullmatch(name):
        return f"`{name}()` reads the engine's settings, variables or catalog, which an audience may not"
    if _RANDOM.fullmatch(name):
        return (
            f"`{name}()` gives different members on every run (each sync would add and remove people at "
            "random); for a stable sample use hash(key) % 100"
        )
    return (
        f"`{name}()` is not a function an audience may call: audiences run only pure functions "
        "(the list and why: revetl/audiences/functions.py)"
    )
