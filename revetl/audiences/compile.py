"""Audiences (DESIGN 4): `audiences/NAME.sql` -> checked SQL the warehouse runs.

An audience file is a YAML header in `--` comments (it ends at the first other line), then one
read-only SELECT written with Jinja:

    -- description: Enterprise users who generated 10+ reports in the last 30 days.
    -- key: user_id
    select p.user_id, p.email, t.reports_30d
    from {{ ref('profiles') }} as p join {{ ref('profile_traits') }} as t using (profile_id)

`ref('model')` becomes the relation dbt built (schema and alias from target/manifest.json, else
the target's default schema; in the warehouse's own catalog). `as_of()` is the "as of" time of the
latest build, read from the `build_info` model when the query runs: `revetl build --as-of`, else
when it ran. So an audience's time windows agree with the computed traits, and the same build
gives the same members whenever the audience runs.

An audience is written in DuckDB's SQL unless its header says `dialect: postgres`; on a warehouse of
another dialect, sqlglot translates it, and revetl's macros for what drifts between engines
(`{{ safe_cast('x', 'timestamp') }}`, `{{ days_between(a, b) }}`: portable.py) render that warehouse's
own body. Those constructs written raw are warnings (`Compiled.warnings`).

`compile_audience` renders and checks (sql.py) and raises on the first problem;
`check.check_project` reports every problem in every audience and sync file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, ValidationError

from revetl.config import Project, Strict, named_file, names_in
from revetl.errors import ConfigError, QueryError, WarehouseError
from revetl.warehouse.connection import Connection, dialect
from revetl.warehouse.relations import quoted, relations
from revetl.warehouse.rendered import remember
from revetl.yaml_files import safe_load

if TYPE_CHECKING:  # Jinja and sqlglot load when an audience is rendered and checked (not when a run kept it)
    from jinja2 import nodes
    from sqlglot import exp

__all__ = [
    "BUILD_INFO",
    "Audience",
    "Compiled",
    "Problem",
    "audience_columns",
    "audience_names",
    "compile_audience",
    "inspect_audience",
    "key_problem",
    "load_audience",
    "read_audience",
    "relations",
]

BUILD_INFO = "build_info"  # the model holding the latest build's as_of (models/build_info.sql)


@dataclass(frozen=True)
class Audience:
    """One audience file, read and its header validated; the SQL is not rendered yet."""

    name: str  # file stem
    path: Path
    description: str
    key: str  # key column from the header
    header: dict  # the parsed YAML header
    template: str  # the SQL body (Jinja) as written
    body_line: int  # 1-based line in the file where the SQL body starts
    dialect: str = "duckdb"  # sqlglot's name of the dialect it is written in (header `dialect:`)


@dataclass(frozen=True)
class Problem:
    """One problem in a project file: `str()` gives `path:line: message`.

    A `warning` is worth reading but not wrong (e.g. a mapping a destination may refuse for some
    rows): it is printed with `warning:` and does not fail `revetl audiences check`.
    """

    path: Path
    line: int | None
    message: str
    warning: bool = False

    def __str__(self) -> str:
        message = f"warning: {self.message}" if self.warning else self.message
        return f"{self.path}:{self.line}: {message}" if self.line else f"{self.path}: {message}"

    def sentence(self) -> str:
        """The ConfigError form: `path, line N: message`."""
        message = f"warning: {self.message}" if self.warning else self.message
        return f"{self.path}, line {self.line}: {message}" if self.line else f"{self.path}: {message}"

    def relative_to(self, root: Path) -> Problem:
        """The same problem with its path relative to `root` when it lies under it (for printing)."""
        try:
            return replace(self, path=self.path.relative_to(root))
        except ValueError:
            return self


class Header(Strict):
    """The YAML header of an audience file."""

    description: str = Field(min_length=1)
    key: str = Field(min_length=1)  # the column that identifies a member
    owner: str | None = None
    tags: list[str] = []
    destinations: dict[str, dict[str, Any]] = {}  # per destination type: defaults a sync may use
    dialect: Literal["duckdb", "postgres"] = "duckdb"  # the SQL it is written in; revetl translates it


def audience_names(project: Project) -> list[str]:
    """Names of the audience files in `audiences/`, sorted."""
    return names_in(project.audiences_dir, ".sql")


def load_audience(project: Project, name: str) -> Audience:
    """Read `audiences/NAME.sql` and validate its header; an unknown name lists the known ones."""
    found = read_audience(named_file(project.audiences_dir, name, ".sql", "audience"))
    if isinstance(found, Problem):
        raise ConfigError(found.sentence())
    return found


def read_audience(path: Path) -> Audience | Problem:
    """Parse one audience file: the header (`--` comment lines at the top) and the SQL body."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        return Problem(path, None, f"cannot read the file: {exc}")
    header_lines: list[str] = []
    for line in lines:
        if not line.lstrip().startswith("--"):
            break
        header_lines.append(line.lstrip()[2:].removeprefix(" "))
    if not header_lines:
        return Problem(path, 1, "an audience starts with a YAML header in `--` comments (description and key)")
    try:
        raw = safe_load("".join(header_lines))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        return Problem(path, mark.line + 1 if mark else 1, (
            f"the header is not valid YAML: {problem} (it ends at the first line that is not a `--` comment; "
            "put other comments after a blank line)"
        ))
    if not isinstance(raw, dict):
        return Problem(path, 1, "the header must be YAML `name: value` lines (description, key)")
    try:
        header = Header.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        line = next((i for i, text in enumerate(header_lines, 1) if text.startswith(f"{key}:")), 1)
        if error["type"] == "missing":
            hint = " (the output column that identifies a member, e.g. user_id)" if key == "key" else ""
            return Problem(path, line, f"the header has no `{key}`{hint}")
        if error["type"] == "extra_forbidden":
            return Problem(path, line, f"the header key `{key}` is unknown; expected {', '.join(Header.model_fields)}")
        loc = ".".join(str(part) for part in error["loc"])
        return Problem(path, line, f"the header's `{loc}`: {error['msg'][:1].lower()}{error['msg'][1:]}")
    return Audience(
        name=path.stem, path=path, description=header.description.strip(), key=header.key, header=raw,
        template="".join(lines[len(header_lines):]), body_line=len(header_lines) + 1, dialect=header.dialect,
    )


def header_line(audience: Audience, name: str) -> int:
    """The file line of header key `name` (1 if not found)."""
    lines = audience.path.read_text(encoding="utf-8").splitlines()[: audience.body_line - 1]
    return next((i for i, text in enumerate(lines, 1) if text.lstrip("- \t").startswith(f"{name}:")), 1)


@dataclass(frozen=True)
class Compiled:
    """An audience rendered and checked. `sql` is runnable when it is one query, even with problems."""

    audience: Audience
    sql: str | None
    columns: list[str] | None  # output columns as sqlglot sees them; None when `*` hides them
    problems: list[Problem] = field(default_factory=list)
    lines: tuple[int, ...] = ()  # file line of each line of `sql` (none when sqlglot translated it)
    warnings: list[Problem] = field(default_factory=list)  # constructs that drift between engines, written raw

    def file_line(self, sql_line: int | None) -> int | None:
        """The line in the audience file of line `sql_line` of the rendered SQL."""
        return _file_line(self.lines, sql_line)


def inspect_audience(project: Project, audience: Audience, refs: dict[str, str] | None = None,
                     target: str | None = None) -> Compiled:
    """Render the audience's Jinja and check its SQL, collecting every problem (see sql.py); its SQL is
    for the warehouse dialect `target` (default: the project's)."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    from revetl.audiences.portable import drift, macros, transpile
    from revetl.audiences.sql import inspect_sql, node_line

    refs = relations(project) if refs is None else refs
    target = target or dialect(project)
    path, offset = audience.path, audience.body_line - 1
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    try:
        template = env.from_string(audience.template)
        calls = _calls(env.parse(audience.template))
    except jinja2.TemplateSyntaxError as exc:
        line = offset + (exc.lineno or 1)
        return Compiled(audience, None, None, [Problem(path, line, f"invalid Jinja: {exc.message}")])
    unknown: list[str] = []

    def ref(*names: str, **_: Any) -> str:
        name = str(names[-1]) if names else ""
        if name not in refs:
            unknown.append(name)
            return _unknown_relation(name)
        return refs[name]

    def as_of() -> str:
        return f"(select as_of from {ref(BUILD_INFO)})"

    try:  # with the macros' bodies in the audience's own dialect (checked), and as markers (translated)
        rendered, marked = (template.render(ref=ref, as_of=as_of, **macros(flavour))
                            for flavour in (audience.dialect, None))
    except Exception as exc:  # anything raised inside the template is this file's problem
        line = _template_line(exc)
        message = (f"the Jinja fails: {getattr(exc, 'message', None) or exc}; the helpers are ref(), as_of(), "
                   "safe_cast() and days_between()")
        return Compiled(audience, None, None, [Problem(path, offset + line if line else audience.body_line, message)])
    problems = []
    known = ", ".join(sorted(name for name in refs if name != BUILD_INFO))
    for name in dict.fromkeys(unknown):
        line = calls.get(("as_of", "") if name == BUILD_INFO else ("ref", name))
        what = f"as_of() needs the `{BUILD_INFO}` model" if name == BUILD_INFO else f"ref('{name}') names no dbt model"
        problems.append(Problem(path, offset + line if line else None, f"{what}; known models: {known}"))
    lines = _line_map(audience.template, rendered, offset)
    # An unknown ref() is reported above; reading it is not a second problem.
    readable = [*refs.values(), *(_unknown_relation(name) for name in unknown)]
    report = inspect_sql(rendered, readable, audience.dialect)
    problems += [
        Problem(path, _file_line(lines, line) if line else audience.body_line, message)
        for line, message in report.problems
    ]
    if report.columns is not None and audience.key.lower() not in {c.lower() for c in report.columns}:
        problems.append(key_problem(audience, report.columns))
    if report.query is None:
        return Compiled(audience, None, report.columns, sorted(problems, key=lambda p: p.line or 0), lines)
    query = _parsed(marked, audience.dialect)
    if audience.dialect == target:
        sql, sql_lines = rendered[: report.end], lines
    else:
        sql, sql_lines = transpile(query, audience.dialect, target), ()
    marked_lines = _line_map(audience.template, marked, offset)
    warnings = [Problem(path, _file_line(marked_lines, line) or audience.body_line, message, warning=True)
                for line, message in drift(query, audience.dialect, node_line)]
    return Compiled(audience, sql, report.columns, sorted(problems, key=lambda p: p.line or 0), sql_lines, warnings)


def _parsed(sql: str, read: str) -> exp.Expr:
    """The query of `sql` (rendered with markers; its rendering with bodies was checked: one query)."""
    import sqlglot

    return next(tree for tree in sqlglot.parse(sql, read=read) if tree is not None)


def _unknown_relation(name: str) -> str:
    """What ref() renders for a model it does not know (reported as a problem; the SQL still parses)."""
    return quoted(name or "missing")


def key_problem(audience: Audience, columns: list[str]) -> Problem:
    """The header's key column is not an output column."""
    return Problem(audience.path, header_line(audience, "key"), (
        f"the key column `{audience.key}` is not an output column (the audience has: {', '.join(columns) or 'none'})"
    ))


def _calls(tree: nodes.Template) -> dict[tuple[str, str], int]:
    """(helper, last constant argument: the model) -> body line of its first call, to point at a bad ref."""
    from jinja2 import nodes

    found: dict[tuple[str, str], int] = {}
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name):
            consts = [arg.value for arg in call.args if isinstance(arg, nodes.Const)]
            found.setdefault((call.node.name, str(consts[-1]) if consts else ""), call.lineno)
    return found


def _template_line(exc: BaseException) -> int | None:
    """Jinja rewrites tracebacks so that template frames carry the template's line numbers."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _line_map(template: str, rendered: str, offset: int) -> tuple[int, ...]:
    """File line of each rendered line: lines Jinja left alone map exactly, changed ones to their block."""
    import difflib

    source, output = template.splitlines(), rendered.splitlines()
    mapping = [offset + 1] * len(output)
    matcher = difflib.SequenceMatcher(None, output, source, autojunk=False)
    for _, i1, i2, j1, j2 in matcher.get_opcodes():
        for k in range(i1, i2):
            j = j1 + min(k - i1, j2 - j1 - 1) if j2 > j1 else min(j1, max(len(source) - 1, 0))
            mapping[k] = offset + j + 1
    return tuple(mapping)


def _file_line(lines: tuple[int, ...], sql_line: int | None) -> int | None:
    if sql_line is None or not lines:
        return None
    return lines[min(max(sql_line, 1), len(lines)) - 1]


def compile_audience(project: Project, audience: Audience) -> str:
    """The audience as runnable SQL for the warehouse connection (refs -> fully-qualified relations).

    Usable as a subquery: `SELECT ... FROM (<sql>) AS audience`. Raises ConfigError
    `<file>, line N: <sentence>` on the first problem. The SQL of a file that passed is kept between runs
    (rendered.py), keyed by the file's text, the relations it may read and the warehouse's dialect.
    """
    refs, target = relations(project), dialect(project)

    def check() -> str:
        compiled = inspect_audience(project, audience, refs, target)
        if compiled.problems:
            raise ConfigError(compiled.problems[0].sentence())
        assert compiled.sql is not None  # one query, no problems
        return compiled.sql

    parts = (audience.header, audience.template, audience.body_line, audience.dialect, sorted(refs.items()))
    return remember("audience", target, parts, check)


def audience_columns(connection: Connection, sql: str) -> list[str]:
    """Output column names of compiled audience SQL, from the warehouse (`LIMIT 0`: reads no rows).
    The query starts on the audience's first line, so the engine's line (`QueryError.line`, the cause)
    is the audience's."""
    try:
        return connection.execute(f"select * from ({sql}\n) as audience limit 0").columns
    except QueryError as exc:
        raise WarehouseError(f"the warehouse rejects the audience query: {exc}") from exc
