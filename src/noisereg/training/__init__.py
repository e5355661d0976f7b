"""Training runs with noise injection: loop, evaluation, atomic checkpoints and resume."""

from noisereg.training.checkpoint import (
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from noisereg.records import METRICS
from noisereg.training.loop import TrainSpec, build_model, evaluate, train
from noisereg.training.noisy_gd import SCHEDULES, run_noisy_gd

__all__ = ["METRICS", "SCHEDULES", "TrainSpec", "atomic_write_json", "atomic_write_text", "build_model", "evaluate",
           "load_checkpoint", "run_noisy_gd", "save_checkpoint", "train"]
