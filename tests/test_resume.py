"""Kill-and-resume: a run killed mid-way and resumed ends with the same numbers, bit for bit (CPU)."""

import json

import pytest

from noisereg.experiments import EXPERIMENTS, run_experiment


class Killed(Exception):
    pass


@pytest.mark.parametrize("name", ["fig3", "fig6"])
def test_kill_and_resume_gives_identical_results(name, tmp_path):
    exp = EXPERIMENTS[name]
    overrides = {"epochs": 4, "checkpoint_every": 1} if name == "fig3" else {"epochs": 3}
    run_experiment(exp, "smoke", tmp_path / "ref", overrides=overrides, show_progress=False)
    calls = []

    def kill(epoch):  # dies in the middle of the second run, after its epoch-2 checkpoint
        calls.append(epoch)
        if len(calls) == overrides["epochs"] + 2:
            raise Killed

    with pytest.raises(Killed):
        run_experiment(exp, "smoke", tmp_path / "run", overrides=overrides, show_progress=False, callback=kill)
    partial = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(partial["runs"]) == 1  # the first run was saved before the crash
    run_experiment(exp, "smoke", tmp_path / "run", overrides=overrides, show_progress=False, resume=True)
    ref = json.loads((tmp_path / "ref" / "results.json").read_text())["runs"]
    got = json.loads((tmp_path / "run" / "results.json").read_text())["runs"]
    assert [r["id"] for r in got] == [r["id"] for r in ref]
    for a, b in zip(got, ref):
        assert a["final"] == b["final"] and a["history"] == b["history"]
