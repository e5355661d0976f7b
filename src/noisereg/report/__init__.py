"""REPORT.md and figures, rebuilt from ``results.json`` files alone (``noisereg report DIR``).

Each figure is drawn once, next to its results.json (:func:`draw_figures`); the text of a section
(:func:`section`) only links to it, so a combined report over several directories draws nothing again.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from noisereg.errors import UserError
from noisereg.sweep import EXPERIMENTS
from noisereg.sweep.run import data_note
from noisereg.sweep.stages import SELECTION, single_stage, stage_of, view
from noisereg.verdicts import arm, mean_se
from noisereg.report.figures import caption, draw
from noisereg.records import METRICS, atomic_write_text

SHOWN = tuple(m for m in METRICS if m != "ggn_trace")  # ggn_trace duplicates hessian_trace in our nets


def command_for(results: dict) -> str:
    """The ``noisereg run`` command that reproduces ``results`` (preset plus --set differences)."""
    exp = EXPERIMENTS[results["experiment"]]
    base = json.loads(json.dumps(dataclasses.asdict(exp.config(results["preset"]))))
    cfg = json.loads(json.dumps(results["config"]))
    sets = [f"--set {k}={','.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in cfg.items() if k in base and base[k] != v]
    data = (f" --data {cfg['data']}" if cfg.get("data") else "") + (f" --data-dir {cfg['data_dir']}" if cfg.get("data_dir") else "")
    return f"noisereg run {results['experiment']} --preset {results['preset']}{data} {' '.join(sets)}".strip()


def _fmt(metric: str, mean: float, se: float, n: int, present: bool = True) -> str:
    if not present:
        return "—"
    if mean != mean:
        return "diverged"
    scale = 100 if metric.endswith("_acc") else 1
    text = f"{scale * mean:.2f}" if scale == 100 else f"{mean:.4g}"
    return text + (f" ± {scale * se:.2g}" if n > 1 else "")


def draw_figures(results: dict, out: Path) -> list[Path]:
    """Draw the figures of one experiment's ``results`` into ``out`` (one PNG per figure spec); of a two-stage
    sweep, its selection runs (every σ; the confirmation runs are in the claims and the notes)."""
    exp = EXPERIMENTS[results["experiment"]]
    results = view(results, SELECTION)
    return [exp.draw(results, spec, Path(out)) if spec["kind"] == "custom" else draw(results, spec, Path(out))
            for spec in exp.figures(results["config"])]


def section(results: dict, figures: str = "") -> str:
    """The REPORT.md section of one experiment; figures are linked as ``figures + file`` (drawn elsewhere)."""
    exp = EXPERIMENTS[results["experiment"]]
    note, name = data_note(results), results["data"]
    lines = [f"## {exp.name}: {exp.description}", "",
             f"Command: `{command_for(results)}`  ",
             f"Data: {note}{f' (`{name}`)' if note != name else ''}"
             f"{f'; {classes} classes (labels 0..{classes - 1})' if (classes := results.get('classes')) else ''}; "
             f"preset `{results['preset']}`; "
             f"environment: {results['environment']}; {results.get('seconds', '?')} s.", ""]
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731 - a literal | would split the cell
    failed, total = results.get("failed", []), len(results.get("failed", [])) + len(results["runs"])
    claims = exp.claims(results) if not failed else [  # a sweep with runs missing judges no claim
        {"claim": "every claim of this section", "paper": "", "verdict": "inconclusive",
         "ours": f"not judged: {len(failed)} of {total} runs failed"}]
    if failed:
        lines += [f"**Incomplete: {len(failed)} of {total} runs failed** (tracebacks in results.json, "
                  "`\"failed\"`); figures and metrics show the runs that finished. Rerunning the command with "
                  "`--resume` runs the failed ones again.", "", "| failed run | error |", "|---|---|",
                  *(f"| {cell(f['id'])} | {cell(f['error'])} |" for f in failed), ""]
    specs = exp.figures(results["config"])
    files = [spec["file"] for spec in specs]
    by_figure = defaultdict(list)  # each claim under the figure it names (row["figure"]), else the first
    for c in claims:
        by_figure[c.get("figure") if c.get("figure") in files else (files[0] if files else None)].append(c)
    table = lambda rows: ["| claim (paper) | paper | ours | verdict |", "|---|---|---|---|", *(  # noqa: E731
        f"| {cell(c['claim'])} | {cell(c['paper'])} | {cell(c['ours'])} | **{c['verdict']}** |" for c in rows), ""]
    for spec in specs:
        text = caption(spec)
        lines += [f"![{spec['file']}]({figures}{spec['file']})", "", *([f"*{text}*", ""] if text else [])]
        lines += table(by_figure[spec["file"]]) if by_figure[spec["file"]] else []
    if not specs or not claims:
        lines += table(claims)
    if lines[-1] == "":
        lines.pop()
    notes = exp.notes(results)
    if notes:
        lines += ["", *notes]
    groups = defaultdict(list)
    staged = not single_stage(results)
    for r in results["runs"]:
        groups[(r["variant"], arm(r), r["sigma"], *((stage_of(r),) if staged else ()))].append(r)
    metrics = [m for m in (*SHOWN, *exp.metrics) if any(m in r["final"] for r in results["runs"])]
    lines += ["", "Final metrics (mean ± standard error over seeds):", "",
              "| variant | method | σ | " + ("stage | " if staged else "") + "seeds | " + " | ".join(metrics) + " |",
              "|---" * (4 + staged + len(metrics)) + "|"]
    for (variant, method, sigma, *stage), rs in groups.items():
        cells = []
        for m in metrics:
            mean, se, _ = mean_se([r["final"].get(m) for r in rs])
            cells.append(_fmt(m, mean, se, len(rs), present=any(m in r["final"] for r in rs)))
        lines.append(f"| {variant} | {method} | {sigma:g} | " + "".join(f"{s} | " for s in stage) + f"{len(rs)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_PREAMBLE = ["Each section: the command that made it, the figures, the paper's claims next to our",
             "numbers with a verdict (reproduced / not reproduced / inconclusive / measured / computed: a",
             "closed form evaluated, no seed or noise draw can change it / not run at this scale; the rule",
             "under each claims table where the section has one), and the final metrics. Rebuild from",
             "results.json alone with `noisereg report DIR`.", ""]


def write_report(out: str | Path, results_list: list[dict], title: str = "noisereg report") -> Path:
    """Draw the figures of the given results into ``out`` and write ``out/REPORT.md``."""
    out = Path(out)
    for r in results_list:
        draw_figures(r, out)
    body = [f"# {title}", "", *_PREAMBLE, *(section(r) for r in results_list)]
    path = out / "REPORT.md"
    atomic_write_text(path, "\n".join(body))
    return path


_RUN_FIELDS = {"id": str, "variant": str, "method": str, "params": dict, "sigma": (int, float), "final": dict,
               "history": list}
"""What every run record of results.json holds (whatever the experiment), with its JSON type."""


def _check_results(res, path: Path) -> None:
    """Refuse a results.json the report cannot read, in one line naming the file and the first missing piece.

    Raises:
        UserError: not an object, an unknown experiment, or a top-level field or run field missing or mistyped.
    """
    fix = "restore it from the run's folder or rerun the experiment"
    if not isinstance(res, dict):
        raise UserError(f"{path} holds a JSON {type(res).__name__}, not a noisereg results object; {fix}")
    if res.get("experiment") not in EXPERIMENTS:
        raise UserError(f"{path} is from unknown experiment {res.get('experiment')!r}; valid: {', '.join(EXPERIMENTS)} "
                        "(an experiment of your own: pass --module MOD, or install its package)")
    for key, kind in (("preset", str), ("config", dict), ("runs", list)):
        if not isinstance(res.get(key), kind):
            raise UserError(f"{path} lacks a valid {key!r} ({kind.__name__}); {fix}")
    for i, run in enumerate(res["runs"]):
        if not isinstance(run, dict):
            raise UserError(f"{path}: run {i} is a JSON {type(run).__name__}, not a run record; {fix}")
        for key, kind in _RUN_FIELDS.items():
            if not isinstance(run.get(key), kind) or isinstance(run.get(key), bool):
                raise UserError(f"{path}: run {i} ({run.get('id', '?')}) lacks a valid {key!r}; {fix}")


def rebuild(directory: str | Path) -> Path:
    """Rebuild figures and REPORT.md from ``DIR/results.json`` or ``DIR/*/results.json``.

    Raises:
        UserError: no results.json there, or a results.json is unreadable, from an unknown experiment,
            or lacks what every results.json holds (the message names the file and the field).
    """
    directory = Path(directory)
    files = [directory / "results.json"] if (directory / "results.json").is_file() else sorted(directory.glob("*/results.json"))
    if not files:
        raise UserError(f"no results.json in {directory} or its subdirectories; pass the --out directory of a run")
    results_list = []
    for f in files:
        try:
            res = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{f} is not valid JSON ({e})") from None
        _check_results(res, f)
        results_list.append(res)
    if len(files) == 1 and files[0].parent == directory:
        return write_report(directory, results_list)
    body = ["# noisereg report", "", "One section per experiment; figures live in the sub-directories.", ""]
    for f, res in zip(files, results_list):  # figures and a REPORT.md next to each results.json, one on top
        write_report(f.parent, [res])
        body.append(section(res, figures=f"{f.parent.relative_to(directory).as_posix()}/"))
    path = directory / "REPORT.md"
    atomic_write_text(path, "\n".join(body))
    return path
