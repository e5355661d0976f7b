"""The command line: demo end to end (short), list, run, report, errors."""

import json

import pytest

from noisereg.cli import main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--steps", "30", "--quiet"]) == 0
    return out


def test_demo_writes_results_and_figure(demo_dir, capsys):
    res = json.loads((demo_dir / "results.json").read_text())
    assert res["experiment"] == "demo" and res["config"]["steps"] == 30
    assert [r["method"] for r in res["runs"]] == ["gd", "full", "layer"]
    for r in res["runs"]:
        assert r["history"][-1]["step"] == 30
        assert set(r["final"]) == {"train_loss", "test_loss", "train_acc", "test_acc"}
        assert r["final"]["train_loss"] < r["history"][0]["train_loss"]  # it learned
    assert (demo_dir / "curves.png").stat().st_size > 10_000
    assert not list(demo_dir.glob(".*"))  # no temporary files left behind


def test_demo_is_reproducible(demo_dir, tmp_path):
    main(["run", "demo", "--out", str(tmp_path), "--steps", "30", "--quiet"])
    a = json.loads((demo_dir / "results.json").read_text())["runs"]
    b = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["final"] for r in a] == [r["final"] for r in b]


def test_report_rebuilds_the_figure(demo_dir, capsys):
    (demo_dir / "curves.png").unlink()
    assert main(["report", str(demo_dir)]) == 0
    assert (demo_dir / "curves.png").exists()
    assert "layer" in capsys.readouterr().out


def test_list_and_errors(tmp_path, capsys):
    assert main(["list"]) == 0
    assert "fig6" in capsys.readouterr().out
    assert main(["run", "fig9"]) == 2
    assert "unknown experiment 'fig9'; valid names: demo, fig2" in capsys.readouterr().err
    assert main(["run", "fig2"]) == 2
    assert "planned but not implemented" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "results.json").write_text("{")
    assert main(["report", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--steps must be >= 1"):
        main(["demo", "--steps", "0", "--out", str(tmp_path)])
