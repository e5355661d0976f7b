"""Selection and confirmation on separate seeds (issue 31): σ is chosen on the selection runs, every claim is
judged on new runs at the chosen σ over ``confirm_seeds``; resume, --jobs and the report keep both stages."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from noisereg.cli import main
from noisereg.errors import UserError
from noisereg.experiments.classify import illustrative, stage_lines
from noisereg.report import section
from noisereg.sweep import EXPERIMENTS, run_experiment
from noisereg.sweep.show import show
from noisereg.sweep.stages import CONFIRMATION, SELECTION, view
from noisereg.verdicts import Sample, paired

TWO_STAGE = ("fig3", "fig4", "fig5", "fig6", "family", "transformer")
ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one intra-op thread, restored after


# ------------------------------------------------------------------------------------ presets and config
@pytest.mark.parametrize("name", TWO_STAGE)
def test_cpu_and_paper_presets_confirm_on_fresh_seeds(name):
    exp = EXPERIMENTS[name]
    for preset, least in (("cpu", 10), ("paper", 3)):
        if preset not in exp.PRESETS:
            continue
        cfg = exp.config(preset)
        assert len(cfg.seeds) >= 3 and len(cfg.confirm_seeds) >= least, (preset, cfg.seeds, cfg.confirm_seeds)
        assert not set(cfg.seeds) & set(cfg.confirm_seeds)
        assert exp.confirms(cfg)
    if "demo" in exp.PRESETS:   # the demo keeps one stage (a fixed σ): its verdicts are illustrative
        assert exp.config("demo").confirm_seeds == () and not exp.confirms(exp.config("demo"))


def test_overlapping_seed_sets_are_refused_in_one_line(tmp_path, capsys):
    exp = EXPERIMENTS["fig3"]
    with pytest.raises(UserError, match=r"confirm_seeds must share no seed with seeds .*got seeds=\(0, 1\), "
                                        r"confirm_seeds=\(1, 2\)"):
        exp.config("smoke", {"seeds": (0, 1), "confirm_seeds": (1, 2)})
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path / "x"), "--set", "seeds=0,1",
                 "--set", "confirm_seeds=1,2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("noisereg: error: Fig3Config: confirm_seeds must share no seed with seeds") and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_show_lists_the_selection_runs_and_counts_the_confirmation_runs(capsys):
    exp = EXPERIMENTS["fig3"]
    text = show(exp, "cpu", {}, None, None)
    cfg = exp.config("cpu")
    assert f"confirm_seeds = {cfg.confirm_seeds!r}" in text   # printed like seeds
    n_sel = len(exp.runs(cfg))
    assert f"selection runs ({n_sel}; they choose σ on validation data):" in text
    # gd, full, layer, sam, sam_half: one σ each over the 10 confirmation seeds
    assert f"then 50 confirmation runs: each method at the σ (ρ, λ) the selection runs choose, over the " \
           f"confirmation seeds {cfg.confirm_seeds}" in text
    assert "confirm-" not in text   # their ids depend on the choice: not listed
    assert "confirmation" not in show(exp, "smoke", {}, None, None)   # one stage


# ------------------------------------------------------------------------------ the confirmation runs
def test_confirmation_runs_are_the_chosen_settings_over_the_confirmation_seeds():
    fig3 = EXPERIMENTS["fig3"]
    cfg = fig3.config("smoke", {"seeds": (0, 1), "confirm_seeds": (5, 6), "sigmas": (0.05, 0.1),
                                "methods": ("gd", "full", "layer", "sam"), "rhos": (0.02, 0.05)})
    ids = [r.id for r in fig3.confirm_runs(cfg, {"full": 0.1, "layer": 0.05, "sam": 0.02, "sam_half": 0.05})]
    assert ids == [f"confirm-{i}-s{s}" for s in (5, 6)
                   for i in ("gd", "full-sigma0.1", "layer-sigma0.05", "sam-rho0.02", "sam_half-rho0.05")]
    assert len(fig3.confirm_runs(cfg, None)) == len(ids)   # the placeholder has the real count
    assert fig3.confirm_runs(fig3.config("smoke"), {"layer": 0.1}) == []   # no confirm_seeds: one stage
    fig4 = EXPERIMENTS["fig4"]   # variants: a choice per variant
    cfg = fig4.config("smoke", {"seeds": (0,), "confirm_seeds": (3,), "sigmas": (0.05, 0.1)})
    ids = [r.id for r in fig4.confirm_runs(cfg, {"width 16": {"full": 0.05, "layer": 0.1},
                                                 "width 48": {"full": 0.1, "layer": 0.05}})]
    assert ids == ["confirm-width 16-gd-s3", "confirm-width 16-full-sigma0.05-s3", "confirm-width 16-layer-sigma0.1-s3",
                   "confirm-width 48-gd-s3", "confirm-width 48-full-sigma0.1-s3", "confirm-width 48-layer-sigma0.05-s3"]
    fig6 = EXPERIMENTS["fig6"]   # its claims speak of every σ of full and layer-wise noise
    cfg = fig6.config("smoke", {"seeds": (0,), "confirm_seeds": (3,), "sigmas": (0.05, 0.2)})
    assert [r.id for r in fig6.confirm_runs(cfg, {"full": 0.05, "layer": 0.2})] == [
        "confirm-gd-s3", "confirm-full-sigma0.05-s3", "confirm-full-sigma0.2-s3", "confirm-layer-sigma0.05-s3",
        "confirm-layer-sigma0.2-s3"]
    tr = EXPERIMENTS["transformer"]   # the weight-decay arm at its chosen λ
    cfg = tr.config("smoke", {"seeds": (0,), "confirm_seeds": (4,), "methods": ("gd", "wd", "layer")})
    assert [r.id for r in tr.confirm_runs(cfg, {"wd": 1.0, "layer": 0.05})] == [
        "confirm-gd-s4", "confirm-wd1-s4", "confirm-layer-sigma0.05-s4"]
    fam = EXPERIMENTS["family"]   # the equal-compute twins are arms of their own, each at its own choice
    cfg = fam.config("smoke", {"seeds": (0,), "confirm_seeds": (2,), "methods": ("gd", "mrwp"),
                               "mrwp_sigmas": (0.01, 0.02)})
    assert [r.id for r in fam.confirm_runs(cfg, {"mrwp": 0.02, "mrwp_eq": 0.01})] == [
        "confirm-gd-s2", "confirm-mrwp_eq-sigma0.01-s2", "confirm-mrwp-sigma0.02-s2"]


SMALL = {"hidden": (16, 16), "n_train": 64, "n_val": 32, "epochs": 2, "eval_every": 1, "methods": ("gd", "layer"),
         "sigmas": (0.05, 0.2), "seeds": (0, 1), "confirm_seeds": (2,)}


def _comparable(res: dict) -> dict:
    res = json.loads(json.dumps(res))
    res.pop("seconds"), res.pop("environment")
    for r in res["runs"]:
        r.pop("seconds")
    return res


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("two")
    return out, run_experiment(EXPERIMENTS["fig3"], "smoke", out, overrides=SMALL, show_progress=False)


def test_a_two_stage_sweep_records_both_stages(two_stage):
    _, res = two_stage
    sel, conf = view(res, SELECTION)["runs"], view(res, CONFIRMATION)["runs"]
    assert [r["id"] for r in sel] == [r.id for r in EXPERIMENTS["fig3"].runs(EXPERIMENTS["fig3"].config("smoke", SMALL))]
    chosen = res["selected"]["layer"]
    assert [r["id"] for r in conf] == ["confirm-gd-s2", f"confirm-layer-sigma{chosen:g}-s2"]
    assert {r["stage"] for r in sel} == {"selection"} and {r["stage"] for r in conf} == {"confirmation"}
    assert {r["seed"] for r in conf} == {2} and {r["seed"] for r in sel} == {0, 1}
    assert [r["id"] for r in res["runs"]] == [r["id"] for r in sel + conf]   # selection first


def test_resume_after_the_selection_stage_runs_only_the_confirmation(two_stage, tmp_path):
    ref, res = two_stage
    out = tmp_path / "run"
    shutil.copytree(ref, out)
    killed = {**res, "runs": view(res, SELECTION)["runs"]}   # as if killed once the selection stage ended
    (out / "results.json").write_text(json.dumps(killed))
    for r in view(res, CONFIRMATION)["runs"]:
        (out / "checkpoints" / f"{r['id']}.pt").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    again = run_experiment(EXPERIMENTS["fig3"], "smoke", out, overrides=SMALL, show_progress=False, resume=True)
    assert _comparable(again) == _comparable(res)
    assert all((out / "checkpoints" / n).stat().st_mtime_ns == t for n, t in stamps.items())   # not rerun


def test_two_jobs_rebuild_the_confirmation_runs_from_the_selection(two_stage, tmp_path):
    _, res = two_stage
    again = run_experiment(EXPERIMENTS["fig3"], "smoke", tmp_path, overrides=SMALL, show_progress=False, jobs=2)
    assert _comparable(again) == _comparable(res)


# ------------------------------------------------------------------------------------------ judgement
def _results(preset="cpu", stages=True, confirm=True):
    """Synthetic fig3 results: layer-wise noise at σ = 0.05 wins on validation; its confirmation runs decide."""
    cfg = dataclasses.asdict(EXPERIMENTS["fig3"].config("smoke", {"seeds": (0, 1, 2), "confirm_seeds": (3, 4, 5, 6),
                                                                   "sigmas": (0.05, 0.1)}))
    runs = []

    def add(rid, method, sigma, seed, stage, test, val):
        rec = {"id": rid, "variant": "", "params": {}, "method": method, "sigma": sigma, "seed": seed,
               "final": {"test_acc": test, "val_acc": val}, "history": []}
        runs.append({**rec, "stage": stage} if stages else rec)

    for s in (0, 1, 2):   # selection: σ = 0.05 best on validation; test numbers that would say "not reproduced"
        add(f"gd-s{s}", "gd", 0.0, s, "selection", 0.90, 0.80)
        add(f"layer-sigma0.05-s{s}", "layer", 0.05, s, "selection", 0.10 + 0.01 * s, 0.85)
        add(f"layer-sigma0.1-s{s}", "layer", 0.1, s, "selection", 0.99, 0.70)
    if confirm:
        for s in (3, 4, 5, 6):
            add(f"confirm-gd-s{s}", "gd", 0.0, s, "confirmation", 0.70 + 0.01 * s, 0.75)
            add(f"confirm-layer-sigma0.05-s{s}", "layer", 0.05, s, "confirmation", 0.75 + 0.01 * s + 0.001 * (s % 2), 0.7)
    return {"experiment": "fig3", "preset": preset, "config": {**cfg, "data": None, "data_dir": None},
            "data": "digits", "sizes": {"train": 128, "val": 256, "test": 1000}, "environment": {}, "runs": runs}


def _row(rows, start):
    return next(r for r in rows if r["claim"].startswith(start))


def test_claims_are_judged_on_the_confirmation_runs_only():
    fig3 = EXPERIMENTS["fig3"]
    res = _results()
    row = _row(fig3.claims(res), "layer-wise noise raises test accuracy over GD")
    assert row["verdict"] == "reproduced" and "at σ=0.05" in row["ours"] and "(4 seeds)" in row["ours"]
    assert "GD 74.50" in row["ours"]   # the confirmation seeds' GD, not the selection's 90 %
    for r in res["runs"]:   # the selection runs' test numbers change nothing
        if r["stage"] == "selection":
            r["final"]["test_acc"] = 0.5
    assert fig3.claims(res) == fig3.claims(_results())
    for r in res["runs"]:   # the confirmation runs decide
        if r["stage"] == "confirmation" and r["method"] == "layer":
            r["final"]["test_acc"] -= 0.2
    assert _row(fig3.claims(res), "layer-wise noise raises")["verdict"] == "not reproduced"


def test_the_confirmation_seeds_never_choose_sigma_again():
    """fig6 reruns every σ of layer-wise noise; its "best" stays the σ the selection runs chose, even where the
    confirmation runs' own validation accuracy would pick another."""
    res = _results()
    for s in (3, 4, 5, 6):
        res["runs"].append({"id": f"confirm-layer-sigma0.1-s{s}", "variant": "", "params": {}, "method": "layer",
                            "sigma": 0.1, "seed": s, "final": {"test_acc": 0.5, "val_acc": 0.99}, "history": [],
                            "stage": "confirmation"})
    row = _row(EXPERIMENTS["fig3"].claims(res), "layer-wise noise raises")
    assert "at σ=0.05" in row["ours"] and row["verdict"] == "reproduced"


def test_a_two_stage_sweep_without_its_confirmation_judges_nothing():
    rows = EXPERIMENTS["fig3"].claims(_results(confirm=False))
    assert [r["verdict"] for r in rows] == ["inconclusive"] and "confirmation runs are missing" in rows[0]["ours"]


def test_the_report_prints_both_stages():
    text = section(_results())
    assert "Two stages: σ (ρ, λ) of each method was chosen on validation accuracy over the selection seeds (0, 1, 2)" \
           in text and "4 confirmation seeds (3, 4, 5, 6)" in text
    sel_table, conf_table = text.index("| variant | method | selected σ / ρ |"), text.index("Confirmation runs")
    assert sel_table < conf_table
    assert "| – | layer | 0.05 | 4 | 70.00 ± 0.00% (4 seeds) |" in text
    assert "| variant | method | σ | stage | seeds |" in text and "| layer | 0.1 | selection | 3 |" in text


def test_old_single_stage_results_still_judge_and_say_so():
    """results.json written before the two stages (no "stage", no confirm_seeds in the config): one stage."""
    res = _results(stages=False, confirm=False)
    del res["config"]["confirm_seeds"]
    rows = EXPERIMENTS["fig3"].claims(res)
    assert _row(rows, "layer-wise noise raises")["verdict"] == "not reproduced"   # judged as before, on all runs
    assert stage_lines(res)[0].startswith("One stage: σ was chosen and the claims judged on the same seeds (these "
                                          "results were written before")
    text = section(res)
    assert "One stage" in text and "| stage |" not in text


def test_the_committed_results_rebuild_as_single_stage(tmp_path):
    """Results written before the two stages (no run carries a stage) say so: the committed ones still in that
    form, and a two-stage result with its stages stripped (so the check outlives the reruns)."""
    old = []
    for name in ("fig3", "fig4", "fig5", "fig6", "transformer"):
        res = json.loads((ROOT / "docs" / "results" / name / "results.json").read_text())
        if not any("stage" in r for r in res["runs"]):
            old.append(res)
        else:   # the selection runs alone, as an older version wrote them
            old.append({**res, "config": {k: v for k, v in res["config"].items() if k != "confirm_seeds"},
                        "runs": [{k: v for k, v in r.items() if k != "stage"} for r in res["runs"]
                                 if r["stage"] == "selection"]})
    for res in old:
        text = section(res)
        assert "One stage: σ was chosen and the claims judged on the same seeds (these results were written before" in text


def test_demo_verdicts_are_illustrative_beside_the_committed_cpu_verdict(tmp_path):
    res = _results(preset="demo", stages=False, confirm=False)
    res["config"]["confirm_seeds"] = []
    rows = EXPERIMENTS["fig3"].claims(res)
    row = _row(rows, "layer-wise noise raises test accuracy over GD")
    committed = EXPERIMENTS["fig3"].claims(json.loads((ROOT / "docs/results/fig3/results.json").read_text()))
    cpu = _row(committed, "layer-wise noise raises test accuracy over GD")["verdict"]
    assert row["verdict"] == f"illustrative: not reproduced; committed cpu: {cpu}"
    assert "(preset demo" in row["claim"]   # matched to the cpu row without the scale note
    absent = illustrative("fig3", [{"claim": "x", "paper": "", "ours": "", "verdict": "inconclusive"},
                                   {"claim": "y", "paper": "", "ours": "", "verdict": "measured"}], root=tmp_path)
    assert absent[0]["verdict"] == "illustrative: inconclusive; committed cpu: not in this checkout (docs/results)"
    assert absent[1]["verdict"] == "measured"
    assert _row(EXPERIMENTS["fig3"].claims(_results()), "layer-wise noise raises")["verdict"] == "reproduced"  # cpu


# ----------------------------------------------------------------------------------- what is excluded
def S(*values):
    return Sample(dict(enumerate(values)))


def test_an_inconclusive_comparison_says_what_the_data_exclude():
    a, b = S(0.90, 0.92, 0.91), S(0.905, 0.91, 0.92)
    p = paired(a, b)
    assert p.verdict == "inconclusive" and p.text().endswith("; an effect above +1.59 pts is excluded at 95 %")
    assert f"{100 * p.high:+.2f}" == "+1.59"
    q = paired(a, b, at_least=True)
    assert q.verdict == "inconclusive" and q.text().endswith("; A behind B by more than 1.92 pts is excluded at 95 %")
    t = paired(S(3.0, 5.0, 4.0), S(4.0, 4.5, 4.1), lower_is_better=True)
    assert t.text(1, "").endswith(f"; an effect above +{t.high:.4g} is excluded at 95 %")
    assert "excluded" not in paired(S(0.95, 0.96, 0.97), S(0.94, 0.95, 0.96)).text()   # reproduced
    assert "excluded" not in paired(S(0.9), S(0.8)).text()   # one pair: no interval
    assert "excluded" not in paired(S(0.9, float("nan"), 0.9), S(0.8, 0.8, 0.8)).text()   # diverged


def test_confirmation_ids_that_repeat_selection_ids_are_a_bug_named_before_they_run(tmp_path):
    from noisereg.sweep import Experiment, Job

    def job(checkpoint=None, resume=False):
        return {"method": "gd", "sigma": 0.0, "seed": 0, "final": {}, "history": []}

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        pass

    class Clash(Experiment):   # no name: not registered
        PRESETS = {"smoke": {}}
        Config = Cfg

        def data(self, cfg, data, data_dir):
            return "none"

        def runs(self, cfg):
            return [Job("a", "", job)]

        def confirms(self, cfg):
            return True

        def confirm_runs(self, cfg, selected):
            return [Job("a", "", job)]

    with pytest.raises(ValueError, match=r"confirmation run ids \['a'\] repeat selection run ids"):
        run_experiment(Clash(), "smoke", tmp_path, show_progress=False)
