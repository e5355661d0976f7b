"""The command line: list, run (smoke presets), report, demo, and every error it reports."""

import json

import numpy as np
import pytest

from noisereg.cli import main
from noisereg.experiments import EXPERIMENTS

from noisereg.training import METRICS

METRIC_NAMES = set(METRICS)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_smoke_preset_runs_and_reports(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["run", name, "--preset", "smoke", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["experiment"] == name and res["preset"] == "smoke" and res["runs"]
    assert {"experiment", "preset", "config", "runs"} <= set(res)
    for r in res["runs"]:
        assert r["method"] in ("gd", "full", "layer") and isinstance(r["seed"], int)
        steps = [h["step"] for h in r["history"]]
        assert steps and steps == sorted(steps)
        if name.startswith("fig"):  # training experiments: evaluation at step 0, DESIGN.md metric names only
            assert steps[0] == 0
            assert set(r["final"]) <= METRIC_NAMES
            assert all(set(h) - {"step", "epoch"} <= METRIC_NAMES for h in r["history"])
    report = (out / "REPORT.md").read_text()
    assert "| claim (paper) | paper | ours | verdict |" in report and f"noisereg run {name} --preset smoke" in report
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    assert (out / "checkpoints").is_dir() or not name.startswith("fig")
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_report_rebuilds_from_results_json_alone(tmp_path):
    out = tmp_path / "fig3"
    main(["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet"])
    for f in [*out.glob("*.png"), out / "REPORT.md"]:
        f.unlink()
    import shutil
    shutil.rmtree(out / "checkpoints")
    assert main(["report", str(out)]) == 0
    assert (out / "REPORT.md").exists() and (out / "fig3.png").exists()


def test_divergent_runs_are_recorded_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "div"
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet", "--set", "lr=1e6"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["runs"]) == 3 and all(r["diverged"] for r in res["runs"])
    assert "diverged" in (out / "REPORT.md").read_text()


def test_npz_data(tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "d.npz"
    np.savez(f, x_train=rng.normal(size=(40, 6)).astype(np.float32), y_train=rng.integers(0, 3, 40),
             x_test=rng.normal(size=(20, 6)).astype(np.float32), y_test=rng.integers(0, 3, 20))
    assert main(["run", "fig3", "--preset", "smoke", "--data", str(f), "--out", str(tmp_path / "o"), "--quiet",
                 "--set", "n_train=none"]) == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["config"]["data"] == str(f) and res["config"]["n_train"] is None


def test_demo_smoke(tmp_path, capsys):
    assert main(["demo", "--preset", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Report:" in out and (tmp_path / "REPORT.md").exists()
    text = (tmp_path / "REPORT.md").read_text()
    from noisereg.cli import DEMO_PLAN

    for name, _ in DEMO_PLAN:
        if name in EXPERIMENTS:
            assert f"## {name}" in text
    assert "](fig2/fig2.png)" in text


def test_list_and_errors(tmp_path, capsys):
    assert main(["list"]) == 0
    assert "fig6" in capsys.readouterr().out
    assert main(["run", "fig9"]) == 2
    assert "unknown experiment 'fig9'; valid names: fig2, fig3" in capsys.readouterr().err
    assert main(["run", "fig3", "--preset", "huge"]) == 2
    assert "unknown preset 'huge' for fig3; valid: smoke, cpu, paper" in capsys.readouterr().err
    assert main(["run", "fig3", "--set", "widths=3"]) == 2
    assert "unknown --set key 'widths'; valid keys:" in capsys.readouterr().err
    assert main(["run", "fig3", "--set", "epochs=many"]) == 2
    assert "--set epochs: expected int, got 'many'" in capsys.readouterr().err
    assert main(["run", "fig3", "--set", "augment=maybe"]) == 2
    assert "expected a boolean" in capsys.readouterr().err
    assert main(["run", "fig3", "--set", "lr"]) == 2
    assert "--set expects key=value" in capsys.readouterr().err
    assert main(["run", "fig3", "--set", "lr=nan"]) == 2
    assert "expected a finite number" in capsys.readouterr().err
    assert main(["run", "fig3", "--preset", "paper", "--out", str(tmp_path / "p")]) == 2
    assert "fashion_mnist" in capsys.readouterr().err
    assert main(["run", "fig2", "--preset", "smoke", "--data", "x.npz"]) == 2
    assert "fig2 uses its own synthetic data" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err
    (tmp_path / "results.json").write_text("{")
    assert main(["report", str(tmp_path)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    (tmp_path / "results.json").write_text('{"experiment": "figX"}')
    assert main(["report", str(tmp_path)]) == 2
    assert "unknown experiment 'figX'" in capsys.readouterr().err
