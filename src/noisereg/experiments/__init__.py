"""Experiments of the paper, by name: Section 5 (fig2-fig6) and the theory ones. ``EXPERIMENTS[name]`` is an instance."""

from noisereg.experiments.base import Experiment, Job, Run, parse_overrides, run_experiment
from noisereg.experiments.fig2 import Fig2
from noisereg.experiments.fig3 import Fig3
from noisereg.experiments.fig4 import Fig4
from noisereg.experiments.fig5 import Fig5
from noisereg.experiments.fig6 import Fig6
from noisereg.experiments.grouplasso import GroupLasso
from noisereg.experiments.lasso import Lasso
from noisereg.experiments.logistic import Logistic
from noisereg.experiments.nuclear import Nuclear
from noisereg.experiments.psd import PSD
from noisereg.experiments.taylor import Taylor
from noisereg.experiments.variance import Variance

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (Fig2(), Fig3(), Fig4(), Fig5(), Fig6(), Variance(), Taylor(),
                                                  Lasso(), Nuclear(), GroupLasso(), PSD(), Logistic())}

__all__ = ["EXPERIMENTS", "Experiment", "Job", "Run", "parse_overrides", "run_experiment"]
