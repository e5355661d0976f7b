"""TensorBoard event files for a sweep: ``OUT/tensorboard/<run id>/``, one folder per run.

Written with :class:`torch.utils.tensorboard.SummaryWriter` (``pip install "noisereg[tensorboard]"``)
and read with ``tensorboard --logdir OUT/tensorboard``. In each run's folder:

- one scalar per value of :func:`noisereg.tracking.scalars` at each evaluation (tag = its
  results.json name: ``test_acc``, ``train_loss``, ..., ``sigma``, ``grad_evals``; step =
  optimizer steps);
- the run's settings (:func:`noisereg.tracking.settings`) as a Markdown table, text tag
  ``settings``, written when the run starts;
- when it ends, its ``final`` values as ``final/NAME`` at the last step, and the settings with
  those final values as TensorBoard hparams (in the same folder, so the HParams dashboard lists one
  session per run).

A session that writes a run whose folder already holds events (``--resume``) opens its writer with
``purge_step`` = the first step it writes and writes the run's whole history again: TensorBoard
drops the earlier events from that step on, so each step is read once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noisereg.integrations import require
from noisereg.tracking import Backend, RunInfo, final_scalars, scalars, settings


class TensorBoardLog(Backend):
    """The TensorBoard backend of :class:`noisereg.tracking.Tracking`.

    Raises:
        MissingExtraError: TensorBoard is not installed.
    """

    name = "tensorboard"

    def __init__(self, out: Path, state: dict | None):
        super().__init__(state)
        require("tensorboard", "tensorboard", "--log-to tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.SummaryWriter = SummaryWriter
        self.state["dir"] = "tensorboard"
        self.root = Path(out) / "tensorboard"
        self.writers: dict[str, Any] = {}

    def begin(self, info: RunInfo, history: list[dict[str, Any]]) -> None:
        folder = self.root / info.id
        first = int(history[0]["step"])
        rewrite = folder.is_dir() and any(folder.glob("events.out.tfevents.*"))
        writer = self.SummaryWriter(str(folder), purge_step=first if rewrite else None)
        table = ["| setting | value |", "|---|---|",
                 *(f"| {k} | {v.replace('|', '/')} |" for k, v in settings(self.results, info).items())]
        writer.add_text("settings", "\n".join(table), global_step=first)
        self.writers[info.id] = writer

    def write(self, info: RunInfo, entry: dict[str, Any]) -> None:
        writer = self.writers[info.id]
        for name, value in scalars(info, entry).items():
            writer.add_scalar(name, value, global_step=int(entry["step"]))
        writer.flush()

    def finish(self, info: RunInfo, record: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        writer = self.writers.pop(info.id)
        step = int(record["history"][-1]["step"])
        final = {f"final/{k}": v for k, v in final_scalars(record).items()}
        for name, value in final.items():
            writer.add_scalar(name, value, global_step=step)
        for summary in hparams(settings(self.results, info), final):
            writer.file_writer.add_summary(summary, step)
        writer.close()

    def fail(self, info: RunInfo, error: str) -> None:
        super().fail(info, error)
        writer = self.writers.pop(info.id, None)
        if writer is not None:
            writer.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
