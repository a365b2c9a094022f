"""Reference pages generated from the code: the CLI from its argparse parser, recipes from their pydantic schema.

Used by docs/hooks.py at build time and by tests/test_docs.py. Only public entry points are imported
(``danlu.cli.build_parser``, ``danlu.recipe.Recipe``, ``danlu.models.specs.MODELS``), so the pages survive
modules moving around inside the package.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import os
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# ---------------------------------------------------------------------------------------------------------- CLI


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: Any) -> str:
    """Inline code that survives backticks and pipes inside a table cell."""
    s = str(text).replace("|", "\\|")
    return f"`` {s} ``" if "`" in s else f"`{s}`"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each sub-command, in the order the parser lists them."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias of a sub-command already listed
                    continue
                seen.add(id(sub))
                out.append((name, helps.get(name, ""), sub))
    return out


def _argument_row(parser: argparse.ArgumentParser, action: argparse.Action) -> str | None:
    if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
        return None
    formatter = parser._get_formatter()
    if action.option_strings:
        names = ", ".join(action.option_strings)
        if action.nargs != 0:
            names += " " + formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    else:
        names = formatter._format_args(action, formatter._get_default_metavar_for_positional(action))
    helptext = formatter._expand_help(action) if action.help else ""
    if action.choices and not isinstance(action.choices, dict):
        helptext = (helptext + " " if helptext else "") + "(one of: " + ", ".join(map(str, action.choices)) + ")"
    default = action.default
    shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 or default == [] \
        else _code(default)
    return f"| {_code(names)} | {shown} | {_cell(helptext)} |"


def _command_section(name: str, summary: str, parser: argparse.ArgumentParser, depth: int) -> list[str]:
    lines = [f"{'#' * min(depth, 6)} `{name}`", ""]
    if summary:
        lines += [_cell(summary), ""]
    usage = " ".join(parser.format_usage().split()).removeprefix("usage: ")
    lines += ["```text", usage, "```", ""]
    if parser.description and depth > 2:
        lines += [_cell(parser.description), ""]
    for group in parser._action_groups:
        rows = [r for a in group._group_actions if (r := _argument_row(parser, a))]
        if not rows:
            continue
        title = {"positional arguments": "Arguments", "options": "Options",
                 "optional arguments": "Options"}.get(group.title or "", group.title or "Options")
        lines += [f"**{title[:1].upper() + title[1:]}**", ""]
        if group.description:
            lines += [_cell(group.description), ""]
        lines += ["| argument | default | what it does |", "| --- | --- | --- |", *rows, ""]
    for sub_name, sub_help, sub in _subcommands(parser):
        lines += _command_section(f"{name} {sub_name}", sub_help, sub, depth + 1)
    return lines


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Markdown for every verb of ``danlu`` (and every nested sub-command), from the parser itself."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "10000"  # usage lines unwrapped, whatever the terminal
    try:
        if parser is None:
            from danlu.cli import build_parser

            parser = build_parser()
        verbs = _subcommands(parser)
        lines = [
            "# CLI reference",
            "",
            "Generated from `danlu.cli.build_parser()` when the site is built; `danlu VERB --help` prints the "
            "same. Every verb also takes `--debug` (tracebacks), `-v`/`-vv` (more log output) and `--quiet`. "
            "Exit codes: 0 success, 1 a bug of ours, 2 a user error (printed without a traceback).",
            "",
            "| verb | what it does |",
            "| --- | --- |",
            *(f"| [`{n}`](#{_anchor('danlu ' + n)}) | {_cell(h)} |" for n, h, _ in verbs),
            "",
        ]
        lines += _command_section("danlu", parser.description or "", parser, 2)
        return "\n".join(lines).rstrip() + "\n"
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _anchor(heading: str) -> str:
    """The id MkDocs' toc extension gives a heading (its default slugify)."""
    import re
    import unicodedata

    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


# ------------------------------------------------------------------------------------------------------- recipes


def _source_notes(cls: type) -> dict[str, str]:
    """Field name → the comment beside its definition, or the comment lines just above it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, tuple[str, bool]] = {}  # line → (text, whether code precedes it on that line)
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(), tok.start[0] in code_lines)
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.add(tok.start[0])
    notes: dict[str, str] = {}
    body = ast.parse(source).body[0].body  # the class's statements
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        trailing = [comments[n][0] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                    if n in comments and comments[n][1]]
        above: list[str] = []
        n = node.lineno - 1
        while n in comments and not comments[n][1]:
            above.insert(0, comments[n][0])
            n -= 1
        # a one-word comment above a run of fields is a section label ("# tabular"), not a description
        label = [c for c in above if len(c.split()) == 1]
        prose = [c for c in above if len(c.split()) > 1]
        text = " ".join(prose + trailing).strip()
        if label:
            text = f"({label[-1]}) {text}".strip()
        notes[node.target.id] = text
    return notes


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(_lit(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple, dict, set):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {"Path": "path", "str": "str", "int": "int", "float": "float", "bool": "bool"}.get(
            tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def _lit(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _yaml_value(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "{…}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return value if value else '""'
    return _lit(value)


def _constraints(field: Any) -> str:
    """ge/gt/le/lt from the field's metadata, as ≥ 0, < 1."""
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    out = []
    for meta in field.metadata:
        for attr, sign in signs.items():
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
    return ", ".join(out)


def _model_in(tp: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds, directly or as ``Model | None``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        found = _model_in(arg)
        if found is not None and typing.get_origin(tp) in (typing.Union, types.UnionType):
            return found
    return None


def _dict_of_model(tp: Any) -> type[BaseModel] | None:
    """``dict[str, Model]`` (or that ``| None``): the model of its values."""
    if typing.get_origin(tp) is dict:
        return _model_in(typing.get_args(tp)[1])
    for arg in typing.get_args(tp):
        if typing.get_origin(arg) is dict:
            return _model_in(typing.get_args(arg)[1])
    return None


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    return _code(_yaml_value(value))


def recipe_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str, str]]:
    """(key path, type, default, constraints, description) for every key of ``model``, nested models expanded.

    A nested model's own row says what the block is; its keys follow as ``block.key``. ``model.options`` is
    left to the model registry (see ``model_sections``); ``dict[str, Model]`` blocks (``tune``) document one
    entry as ``block.<key>``.
    """
    notes = _source_notes(model)
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if path == "model.options":
            continue
        description = field.description or notes.get(name, "")
        nested, entries = _model_in(field.annotation), _dict_of_model(field.annotation)
        if nested is not None:
            doc = " ".join((nested.__doc__ or "").split())
            if doc and not doc.startswith(nested.__name__ + "("):  # pydantic's generated docstring says nothing
                description = f"{doc} {description}".strip()
            type_text = "block" + (" \\| null" if "None" in str(field.annotation) else "")
            rows.append((path, type_text, _default(field), "", description))
            rows += recipe_rows(nested, f"{path}.")
        elif entries is not None:
            rows.append((path, "map \\| null", _default(field), "", description))
            rows += recipe_rows(entries, f"{path}.<key>.")
        else:
            rows.append((path, _type_name(field.annotation), _default(field), _constraints(field), description))
    return rows


def undocumented_keys() -> list[str]:
    """Recipe keys with neither a Field description nor a source comment (tests/test_docs.py keeps this empty)."""
    from danlu.recipe import Recipe

    return [path for path, *_, description in recipe_rows(Recipe) if not description]


def _models() -> dict[str, tuple[type[BaseModel], tuple[str, ...], str]]:
    from danlu.models.recommend_specs import RECOMMENDERS
    from danlu.models.specs import MODELS

    return {**MODELS, **{name: (spec, ("interactions",), summary) for name, (spec, summary) in RECOMMENDERS.items()}}


def model_sections() -> list[str]:
    """One table per model family: the options a recipe's ``model:`` block takes beside ``name``."""
    lines: list[str] = []
    by_class: dict[type, list[str]] = {}
    info: dict[type, tuple[tuple[str, ...], list[str]]] = {}
    for name, entry in _models().items():
        spec, kinds, summary = entry[0], entry[1], entry[-1]
        by_class.setdefault(spec, []).append(name)
        info.setdefault(spec, (tuple(kinds), []))[1].append(f"`{name}`: {summary}")
    for spec, names in by_class.items():
        kinds, summaries = info[spec]
        lines += [f"### {', '.join(f'`{n}`' for n in names)}", ""]
        lines += [f"- {s}" for s in summaries]
        lines += [f"- data: {', '.join(kinds)}", ""]
        doc = (spec.__doc__ or "").strip()
        if doc and not doc.startswith(spec.__name__ + "("):
            lines += [" ".join(doc.split()), ""]
        rows = recipe_rows(spec, "model.")
        if rows:
            lines += ["| key | type | default | allowed | description |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| `{p}` | {t} | {d} | {c} | {_cell(s)} |" for p, t, d, c, s in rows]
        else:
            lines += ["No options."]
        lines.append("")
    return lines


def recipe_reference() -> str:
    """Markdown for every recipe key, generated from ``danlu.recipe.Recipe`` and the model registry."""
    from danlu.recipe import Recipe

    rows = recipe_rows(Recipe)
    lines = [
        "# Recipe reference",
        "",
        "Generated from the pydantic schema (`danlu.recipe.Recipe`) and the model registry when the site is built. "
        "Every key below can be set in a recipe's YAML or as a dotted override "
        "(`danlu train digits-mlp train.lr=3e-3 data.augment.flip=true`); `danlu recipes NAME` prints a recipe "
        "fully resolved. Unknown keys are errors that name the file, line and key path. How recipes work: "
        "[Recipes](../recipes.md).",
        "",
        "| key | type | default | allowed | description |",
        "| --- | --- | --- | --- | --- |",
        *(f"| `{p}` | {t} | {d} | {c} | {_cell(s)} |" for p, t, d, c, s in rows),
        "",
        "## Models",
        "",
        "`model.name` picks one of the models below; its options sit beside the name "
        "(`model: {name: cnn, channels: [32, 64]}`, or `model.channels=[32,64]` as an override). "
        "`danlu models` lists them with their sizes.",
        "",
        *model_sections(),
    ]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------- home, results


def home_page(readme: Path) -> str:
    """The README is the site's home page: one text, its links re-pointed from the repository root to the site."""
    text = readme.read_text(encoding="utf-8")
    return (text.replace("](docs/", "](").replace("](benchmarks/RESULTS.md", "](results.md")
            .replace("(open `site/index.html`)", "(this site)"))



def results_page(path: Path) -> str:
    """benchmarks/RESULTS.md as a page of the site (the one copy stays in benchmarks/)."""
    # its links point from benchmarks/ into docs/ (right on GitHub); in the site both sit in one folder
    text = path.read_text(encoding="utf-8").replace("](../docs/", "](")
    note = ("!!! note \"This page is `benchmarks/RESULTS.md`\"\n    Included when the site is built; the scripts it "
            "names are in `benchmarks/`.\n\n")
    first, _, rest = text.partition("\n")
    return f"{first}\n\n{note}{rest.lstrip()}"
