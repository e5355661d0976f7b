"""REPORT.md and figures, rebuilt from ``results.json`` files alone (``noisereg report DIR``)."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from noisereg.experiments import EXPERIMENTS
from noisereg.experiments.stats import mean_se
from noisereg.report.figures import draw
from noisereg.training import METRICS, atomic_write_text

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


def _fmt(metric: str, mean: float, se: float, n: int) -> str:
    if mean != mean:
        return "diverged"
    scale = 100 if metric.endswith("_acc") else 1
    text = f"{scale * mean:.2f}" if scale == 100 else f"{mean:.4g}"
    return text + (f" ± {scale * se:.2g}" if n > 1 else "")


def section(results: dict, out: Path) -> str:
    """The REPORT.md section of one experiment (draws its figures into ``out``)."""
    exp = EXPERIMENTS[results["experiment"]]
    lines = [f"## {exp.name}: {exp.description}", "",
             f"Command: `{command_for(results)}`  ",
             f"Data: {results['data']}; preset `{results['preset']}`; "
             f"environment: {results['environment']}; {results.get('seconds', '?')} s.", ""]
    for spec in exp.figures(results["config"]):
        if spec["kind"] == "custom":
            exp.draw(results, spec, out)
        else:
            draw(results, spec, out)
        lines.append(f"![{spec['file']}]({spec['file']})")
    lines += ["", "| claim (paper) | paper | ours | verdict |", "|---|---|---|---|"]
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731 - a literal | would split the cell
    lines += [f"| {cell(c['claim'])} | {cell(c['paper'])} | {cell(c['ours'])} | **{c['verdict']}** |"
              for c in exp.claims(results)]
    groups = defaultdict(list)
    for r in results["runs"]:
        groups[(r["variant"], r["method"], r["sigma"])].append(r)
    metrics = [m for m in SHOWN if any(m in r["final"] for r in results["runs"])]
    lines += ["", "Final metrics (mean ± standard error over seeds):", "",
              "| variant | method | σ | seeds | " + " | ".join(metrics) + " |",
              "|---" * (4 + len(metrics)) + "|"]
    for (variant, method, sigma), rs in groups.items():
        cells = []
        for m in metrics:
            mean, se, _ = mean_se([r["final"].get(m) for r in rs])
            cells.append(_fmt(m, mean, se, len(rs)))
        lines.append(f"| {variant} | {method} | {sigma:g} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(out: str | Path, results_list: list[dict], title: str = "noisereg report") -> Path:
    """Write ``out/REPORT.md`` (and the figures next to it) for the given results."""
    out = Path(out)
    body = [f"# {title}", "",
            "Each section: the command that made it, the figures, the paper's claims next to our",
            "numbers with a verdict (reproduced / not reproduced / not run at this scale), and the",
            "final metrics. Rebuild from results.json alone with `noisereg report DIR`.", ""]
    body += [section(r, out) for r in results_list]
    path = out / "REPORT.md"
    atomic_write_text(path, "\n".join(body))
    return path


def rebuild(directory: str | Path) -> Path:
    """Rebuild figures and REPORT.md from ``DIR/results.json`` or ``DIR/*/results.json``.

    Raises:
        FileNotFoundError: no results.json there. ValueError: a results.json is unreadable or
            from an unknown experiment (the message names the file).
    """
    directory = Path(directory)
    files = [directory / "results.json"] if (directory / "results.json").is_file() else sorted(directory.glob("*/results.json"))
    if not files:
        raise FileNotFoundError(f"no results.json in {directory} or its subdirectories; pass the --out directory of a run")
    results_list = []
    for f in files:
        try:
            res = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f} is not valid JSON ({e})") from None
        if res.get("experiment") not in EXPERIMENTS:
            raise ValueError(f"{f} is from unknown experiment {res.get('experiment')!r}; valid: {', '.join(EXPERIMENTS)}")
        results_list.append(res)
    if len(files) == 1 and files[0].parent == directory:
        return write_report(directory, results_list)
    for f, res in zip(files, results_list):  # figures next to each results.json, one REPORT.md on top
        write_report(f.parent, [res])
    return _write_combined(directory, files, results_list)


def _write_combined(directory: Path, files: list[Path], results_list: list[dict]) -> Path:
    body = ["# noisereg report", "", "One section per experiment; figures live in the sub-directories.", ""]
    for f, res in zip(files, results_list):
        text = section(res, f.parent)
        rel = f.parent.relative_to(directory)
        body.append(text.replace("](", f"]({rel}/"))
    path = directory / "REPORT.md"
    atomic_write_text(path, "\n".join(body))
    return path
