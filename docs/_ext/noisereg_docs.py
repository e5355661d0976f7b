"""Pages generated at build time from the code: the API reference and the command-line reference.

``api_page()`` renders one autodoc entry per name of ``noisereg.__all__`` (so a name added there is
documented without touching the docs); ``cli_page()`` renders ``noisereg.cli.build_parser()``, every
subcommand with its usage and arguments. ``docs/conf.py`` writes both into ``docs/_generated/``
before Sphinx reads the sources; ``tests/test_docs.py`` checks them.
"""

from __future__ import annotations

import argparse
import inspect
import io
from contextlib import redirect_stdout
from pathlib import Path


# The example scripts run by the gallery at build time, with the arguments that make them toy-sized.
SMALL_ARGS = {
    "plain_loop.py": ["--steps", "20"],
    "transformer_noise.py": ["--steps", "20", "--p", "11"],
    "lightning_train.py": ["--epochs", "1"],
    "hf_trainer.py": ["--steps", "4"],
}


def reset_argv(gallery_conf, script_vars) -> list[str]:
    """sphinx-gallery's ``reset_argv``: the arguments an example runs with at build time."""
    return SMALL_ARGS.get(Path(script_vars["src_file"]).name, [])


def api_entries() -> list[tuple[str, str]]:
    """``[(name, kind)]`` for every name of ``noisereg.__all__``, kind an autodoc directive."""
    import noisereg

    out = []
    for name in noisereg.__all__:
        obj = getattr(noisereg, name)
        kind = ("automodule" if inspect.ismodule(obj) else "autoclass" if inspect.isclass(obj)
                else "autofunction" if callable(obj) else "autodata")
        out.append((name, kind))
    return out


def api_page() -> str:
    """The API reference (reStructuredText): ``noisereg.<name>`` for each public name, each its own anchor."""
    lines = ["API reference", "=============", "",
             "Every public name of the package, ``noisereg.__all__``, in its order, from its docstring "
             "(``import noisereg as nr``, then ``nr.<name>``). This page is generated from ``noisereg.__all__`` "
             "at build time.", "",
             ".. currentmodule:: noisereg", ""]
    for name, kind in api_entries():
        lines += [f"``{name}``", "-" * (len(name) + 4), ""]
        if kind == "automodule":   # the module's own anchor is module-noisereg.NAME: add noisereg.NAME
            lines += [".. raw:: html", "", f'   <span id="noisereg.{name}"></span>', "",
                      f".. automodule:: noisereg.{name}", "   :members:", ""]
        elif kind == "autoclass":
            lines += [f".. autoclass:: noisereg.{name}", "   :members:", ""]
        else:
            lines += [f".. {kind}:: noisereg.{name}", ""]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for a in parser._actions:
        if isinstance(a, (argparse._SubParsersAction, argparse._HelpAction)):
            continue
        name = ", ".join(a.option_strings) if a.option_strings else a.dest
        if a.option_strings and a.nargs != 0:
            name += " " + (a.metavar or a.dest.upper())
        bits = [a.help or ""]
        if a.choices:
            bits.append("choices: " + ", ".join(f"`{c}`" for c in a.choices))
        if a.option_strings and a.default not in (None, False, [], argparse.SUPPRESS) and a.nargs != 0:
            bits.append(f"default: `{a.default}`")
        rows.append(f"| `{name}` | {_escape('; '.join(b for b in bits if b))} |")
    return rows


def cli_page() -> str:
    """The command-line reference (Markdown), from ``noisereg.cli.build_parser()``."""
    from noisereg.cli import build_parser, main

    parser = build_parser()
    lines = ["# Command-line reference", "",
             "Generated at build time from the argument parser, `noisereg.cli.build_parser()`: every "
             "subcommand of `noisereg`, its usage and its arguments. Examples of use: "
             "[the experiments](../experiments.md).", "",
             "```text", parser.format_usage().strip(), "```", "",
             "| argument | meaning |", "|---|---|", *_argument_rows(parser), ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    for name, p in sub.choices.items():
        lines += [f"## `noisereg {name}`", "", _escape(helps.get(name) or ""), "",
                  "```text", p.format_usage().strip(), "```", ""]
        rows = _argument_rows(p)
        if rows:
            lines += ["| argument | meaning |", "|---|---|", *rows, ""]
    buf = io.StringIO()
    with redirect_stdout(buf):
        main(["list"])
    lines += ["## The experiments (`noisereg list`)", "", "```text", buf.getvalue().rstrip(), "```", ""]
    return "\n".join(lines)


def write_pages(out: Path) -> list[Path]:
    """Write ``api.rst`` and ``cli.md`` into ``out`` (only when their text changed); their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fname, text in (("api.rst", api_page()), ("cli.md", cli_page())):
        path = out / fname
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


def missing_anchors(html_dir: Path) -> list[str]:
    """The names of ``noisereg.__all__`` without an ``id="noisereg.<name>"`` anchor in the built API page."""
    import noisereg

    page = (Path(html_dir) / "_generated" / "api.html").read_text()
    return [name for name in noisereg.__all__ if f'id="noisereg.{name}"' not in page]


if __name__ == "__main__":   # python docs/_ext/noisereg_docs.py check docs/_build/html  (run by scripts/docs.sh)
    import sys

    if sys.argv[1:2] != ["check"] or len(sys.argv) != 3:
        sys.exit("usage: python docs/_ext/noisereg_docs.py check HTML_DIR")
    missing = missing_anchors(Path(sys.argv[2]))
    if missing:
        sys.exit(f"the API page has no anchor for noisereg.{', noisereg.'.join(missing)}: rebuild with -E")
    print("API page: an anchor for each of the", len(__import__("noisereg").__all__), "names of noisereg.__all__")
