"""The command line: list, run (smoke presets), report, demo, --version, and every error it reports."""

import json

import numpy as np
import pytest

import noisereg
from noisereg.cli import main
from noisereg.sweep import EXPERIMENTS
from noisereg.training import METRICS
from noisereg.training.settings import METHODS

METRIC_NAMES = set(METRICS)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_smoke_preset_runs_and_reports(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["run", name, "--preset", "smoke", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["experiment"] == name and res["preset"] == "smoke" and res["runs"]
    assert {"experiment", "preset", "config", "runs"} <= set(res)
    for r in res["runs"]:
        # certify's runs are its prior arms (PAC-Bayes training from a data-dependent or data-independent prior)
        arms = ("data-dependent", "data-independent") if name == "certify" else ()
        assert (r["method"] in METHODS or r["method"] in arms) and isinstance(r["seed"], int)
        assert isinstance(r["params"], dict)
        steps = [h["step"] for h in r["history"]]
        assert steps and steps == sorted(steps)
        if name.startswith("fig"):  # training experiments: evaluation at step 0, training.METRICS names only
            assert steps[0] == 0
            assert set(r["final"]) <= METRIC_NAMES
            assert all(set(h) - {"step", "epoch", "lr"} <= METRIC_NAMES for h in r["history"])
    report = (out / "REPORT.md").read_text()
    assert "| claim (paper) | paper | ours | verdict |" in report and f"noisereg run {name} --preset smoke" in report
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    assert (out / "checkpoints").is_dir() or not name.startswith("fig")
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_report_rebuilds_from_results_json_alone(tmp_path):
    out = tmp_path / "fig3"
    main(["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet"])
    for f in [*out.glob("*.png"), *out.glob("*.svg"), out / "REPORT.md"]:
        f.unlink()
    import shutil
    shutil.rmtree(out / "checkpoints")
    assert main(["report", str(out)]) == 0
    assert (out / "REPORT.md").exists()
    assert all((out / f).exists() for f in ("fig3.png", "fig3.svg", "fig3_curves.png", "fig3_curves.svg"))


def test_divergent_runs_are_recorded_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "div"
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet", "--set", "lr=1e6"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["runs"]) == 3 and all(r["diverged"] for r in res["runs"])
    assert "diverged" in (out / "REPORT.md").read_text()


def test_npz_data_and_the_report_names_it(tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "mydigits.npz"
    np.savez(f, x_train=rng.normal(size=(40, 6)).astype(np.float32), y_train=rng.integers(0, 3, 40),
             x_test=rng.normal(size=(20, 6)).astype(np.float32), y_test=rng.integers(0, 3, 20))
    assert main(["run", "fig3", "--preset", "smoke", "--data", str(f), "--out", str(tmp_path / "o"), "--quiet",
                 "--set", "n_train=none", "--set", "n_val=8"]) == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["config"]["data"] == str(f) and res["config"]["n_train"] is None
    report = (tmp_path / "o" / "REPORT.md").read_text()
    claims = [line for line in report.splitlines() if line.startswith("| layer-wise noise raises")]
    assert claims and all("data file mydigits.npz" in line for line in claims)
    assert "Data: data file mydigits.npz" in report and "embedded" not in report


def test_data_dir_is_named_in_the_report(tmp_path):
    from test_data import write_fashion

    write_fashion(tmp_path / "mnist", arrays={
        "train-images-idx3-ubyte": np.random.default_rng(0).integers(0, 256, (30, 6, 6), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(30, dtype=np.uint8) % 3,
        "t10k-images-idx3-ubyte": np.random.default_rng(1).integers(0, 256, (12, 6, 6), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(12, dtype=np.uint8) % 3})
    out = tmp_path / "o"
    assert main(["run", "fig3", "--preset", "smoke", "--data-dir", str(tmp_path / "mnist"), "--out", str(out),
                 "--quiet", "--set", "dataset=fashion_mnist", "--set", "n_train=none", "--set", "n_val=8"]) == 0
    report = (out / "REPORT.md").read_text()
    claims = [line for line in report.splitlines() if line.startswith("| layer-wise noise raises")]
    assert claims and all(f"fashion_mnist files in {tmp_path / 'mnist'}" in line for line in claims)
    assert "embedded" not in report


def test_embedded_digits_are_named_in_the_report(tmp_path):
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    claims = [line for line in (tmp_path / "REPORT.md").read_text().splitlines() if line.startswith("| layer-wise")]
    assert claims and all("embedded 8x8 digits" in line for line in claims)


def test_demo_smoke_runs_every_experiment_with_a_demo_preset_in_registry_order(tmp_path, capsys):
    import noisereg.cli

    assert not hasattr(noisereg.cli, "DEMO_PLAN")  # the plan is the experiments' demo presets
    assert main(["demo", "--preset", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    ran = [line.split()[2] for line in out.splitlines() if line.startswith("noisereg demo: ")]
    assert ran == [name for name, exp in EXPERIMENTS.items() if "demo" in exp.PRESETS]
    assert ran[:5] == ["fig2", "fig3", "fig4", "variance", "taylor"]
    assert "Report:" in out and (tmp_path / "REPORT.md").exists()
    text = (tmp_path / "REPORT.md").read_text()
    for name in ran:
        assert f"## {name}" in text
        assert json.loads((tmp_path / name / "results.json").read_text())["preset"] == "smoke"
    assert "](fig2/fig2.png)" in text


def test_demo_jobs_parallelises_the_trained_sweeps_and_keeps_the_theory_ones_batched(tmp_path, capsys):
    assert main(["demo", "--preset", "smoke", "--jobs", "2", "--out", str(tmp_path), "--quiet"]) == 0
    env = {n: json.loads((tmp_path / n / "results.json").read_text())["environment"] for n in ("fig3", "lasso", "taylor")}
    assert env["fig3"]["executor"] == "processes" and env["fig3"]["jobs"] == 2
    assert "executor" not in env["lasso"] and env["lasso"]["batched"] is True
    assert "executor" not in env["taylor"]
    assert main(["demo", "--preset", "smoke", "--jobs", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--jobs must be an integer >= 1" in capsys.readouterr().err


def test_demo_threads_reach_every_run_and_are_recorded(tmp_path, capsys, monkeypatch):
    import noisereg.sweep

    seen = []
    monkeypatch.setattr(noisereg.sweep, "run_experiment", lambda exp, preset, out, **kw: seen.append(kw["threads"]))
    monkeypatch.setattr("noisereg.report.rebuild", lambda out: (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        main(["demo", "--preset", "smoke", "--threads", "3", "--out", str(tmp_path), "--quiet"])
    assert seen and set(seen) == {3}
    assert main(["demo", "--preset", "smoke", "--threads", "0", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == "noisereg: error: --threads must be an integer >= 1, got 0"


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"noisereg {noisereg.__version__}"


@pytest.mark.parametrize("item", ["schedule=sometimes", "convention=foo", "methods=gd,bogus", "log=bogus",
                                  "sigmas=-1", "epochs=0", "momentum=1.5", "layers=rows", "seeds=-1",
                                  "dataset=mnist.csv"])
def test_every_value_is_checked_before_the_data_is_loaded(item, tmp_path, capsys, monkeypatch):
    import noisereg.experiments.classify as classify

    def no_load(*args, **kwargs):
        pytest.fail("data loaded before the --set values were checked")

    monkeypatch.setattr(classify, "load", no_load)
    assert main(["run", "fig3", "--preset", "smoke", "--set", item, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"noisereg: error: Fig3Config: {item.split('=')[0]} must be")
    assert not (tmp_path / "o").exists()


def test_user_errors_are_one_line_with_status_2(tmp_path, capsys):
    cases = [(["run", "fig3", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "a")], "no such file"),
             (["run", "fig3", "--data-dir", str(tmp_path), "--out", str(tmp_path / "b")], "--data-dir holds the files"),
             (["run", "fig3", "--preset", "paper", "--data-dir", str(tmp_path), "--out", str(tmp_path / "c")],
              "train-images-idx3-ubyte: not found")]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    cases.append((["run", "fig3", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "d")],
                  "not a readable .npz archive"))
    for argv, match in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err, (argv, err)
    out = tmp_path / "e"
    assert main(["run", "fig2", "--preset", "smoke", "--out", str(out), "--quiet"]) == 0
    assert main(["run", "fig2", "--preset", "smoke", "--out", str(out), "--quiet"]) == 2
    assert "exists: pass --resume" in capsys.readouterr().err
    assert main(["run", "fig2", "--preset", "smoke", "--out", str(out), "--quiet", "--resume", "--set", "n=21"]) == 2
    assert "was written with other settings" in capsys.readouterr().err


@pytest.mark.parametrize("error", [TypeError, ValueError])
def test_a_bug_in_a_run_keeps_its_traceback(error, tmp_path, monkeypatch):
    from noisereg.experiments.fig3 import Fig3

    def broken(self, cfg, run, data):
        raise error("a bug")

    monkeypatch.setattr(Fig3, "model", broken)
    with pytest.raises(error, match="a bug"):
        main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path), "--quiet"])


def test_list_and_errors(tmp_path, capsys, monkeypatch):
    from noisereg.data import files

    monkeypatch.setattr(files, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")  # no Fashion-MNIST anywhere
    monkeypatch.delenv(files.DATA_DIR_ENV, raising=False)
    assert main(["list"]) == 0
    assert "fig6" in capsys.readouterr().out
    assert main(["run", "fig9"]) == 2
    assert "unknown experiment 'fig9'; valid names: fig2, fig3" in capsys.readouterr().err
    assert main(["run", "fig3", "--preset", "huge", "--out", str(tmp_path / "h")]) == 2
    assert "unknown preset 'huge' for fig3; valid: smoke, cpu, demo, cpu-long, paper" in capsys.readouterr().err
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
    assert "fashion_mnist: its four files" in capsys.readouterr().err
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


def test_resume_and_device_reach_the_runs(tmp_path, capsys, monkeypatch):
    """--device cpu wins over a default of cuda; --resume trains only the runs missing from results.json."""
    import torch

    import noisereg.training.loop as loop

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the default device would be cuda
    out, argv = tmp_path / "r", ["run", "fig3", "--preset", "smoke", "--quiet", "--device", "cpu", "--set", "epochs=2"]
    assert main([*argv, "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["environment"]["device"] == "cpu" and len(res["runs"]) > 1
    (out / "results.json").write_text(json.dumps({**res, "runs": res["runs"][:-1]}))  # killed before the last run
    built, build = [], loop.build_model
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: built.append(1) or build(*a, **k))
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    assert len(built) == 2  # the last run only: its model, and its certificate's prior (the same initialisation)
    again = json.loads((out / "results.json").read_text())
    assert [r["id"] for r in again["runs"]] == [r["id"] for r in res["runs"]]
    assert again["runs"][-1]["final"] == res["runs"][-1]["final"]


# ------------------------------------------------------------------ files and messages (issue 33, points 6 and 7)
@pytest.mark.parametrize("damage,match", [
    (lambda r: [1, 2, 3], "results.json holds a JSON list, not a noisereg results object; restore it"),
    (lambda r: {**r, "runs": [{k: v for k, v in r["runs"][0].items() if k != "final"}]},
     r"results.json: run 0 \(gd-s0\) lacks a valid 'final'; restore it"),
    (lambda r: {**r, "runs": "none"}, "results.json lacks a valid 'runs' \\(list\\)"),
    (lambda r: {**r, "runs": [7]}, "results.json: run 0 is a JSON int, not a run record"),
    (lambda r: {**r, "runs": [{**r["runs"][0], "sigma": "x"}]}, r"run 0 \(gd-s0\) lacks a valid 'sigma'"),
], ids=["list", "run-without-final", "runs-not-a-list", "run-not-an-object", "sigma-not-a-number"])
def test_report_on_a_malformed_results_json_is_one_line_exit_2(tmp_path, capsys, damage, match):
    import re

    out = tmp_path / "o"
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet", "--set", "methods=gd"]) == 0
    capsys.readouterr()
    path = out / "results.json"
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err), err


def test_resume_from_a_truncated_checkpoint_says_what_to_do(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet", "--set", "methods=gd"]
    assert main(argv) == 0
    path = out / "results.json"
    res = json.loads(path.read_text())
    path.write_text(json.dumps({**res, "runs": []}))   # the run was killed after its checkpoint was cut short
    ckpt = out / "checkpoints" / "gd-s0.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:300])
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot read checkpoint {ckpt} (" in err
    assert "truncated or damaged; delete it and run again with --resume, and that run starts over from step 0" in err
    ckpt.unlink()
    assert main([*argv, "--resume"]) == 0


def test_resume_on_a_folder_without_results_says_it_starts_afresh(tmp_path, capsys):
    out = tmp_path / "never-ran"
    assert main(["run", "fig2", "--preset", "smoke", "--out", str(out), "--quiet", "--resume"]) == 0
    captured = capsys.readouterr()
    assert (f"noisereg: --resume: {out} holds no results.json, so there is nothing to resume; starting afresh"
            in captured.err)
    assert (out / "results.json").exists()


def test_one_run_is_singular_and_list_is_aligned(tmp_path, capsys):
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path / "o"), "--quiet", "--set", "methods=gd"]) == 0
    assert "fig3: 1 run in " in capsys.readouterr().out
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    starts = {len(line) - len(line[len(line.split()[0]):].lstrip()) for line in lines}   # where descriptions start
    assert len(starts) == 1 and any(line.startswith("transformer ") for line in lines), lines


def test_resume_of_a_folder_written_before_a_config_field_existed(tmp_path, capsys):
    """train_only_classes came later: an older results.json without it resumes when it holds its default."""
    out = tmp_path / "o"
    argv = ["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet", "--set", "methods=gd"]
    assert main(argv) == 0
    path = out / "results.json"
    res = json.loads(path.read_text())
    del res["config"]["train_only_classes"]
    path.write_text(json.dumps(res))
    assert main([*argv, "--resume"]) == 0
    path.write_text(json.dumps(res))
    assert main([*argv, "--resume", "--set", "train_only_classes=true"]) == 2
    assert "train_only_classes: (absent) -> True" in capsys.readouterr().err
