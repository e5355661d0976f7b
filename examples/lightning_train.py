"""Noise injection in PyTorch Lightning with the NoiseInjection callback.
======================================================================

    python examples/lightning_train.py [--epochs 5] [--accumulate 2] [--precision bf16-mixed]
    torchrun --standalone --nproc_per_node 2 examples/lightning_train.py --devices 2 --strategy ddp

Needs `pip install "noisereg[lightning]"`. The callback perturbs the weights for each micro-batch's
forward and backward (one draw per optimizer step, also with gradient accumulation), restores them
before the optimizer step, and keeps its noise stream in the checkpoints.
"""

import argparse

import lightning as L
import torch

from noisereg.integrations.lightning import NoiseInjection

parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # the docs gallery runs it without a docstring
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--sigma", type=float, default=0.05)
parser.add_argument("--accumulate", type=int, default=2)
parser.add_argument("--precision", default="32-true")
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--strategy", default="auto")
parser.add_argument("--out", default=None, help="checkpoint directory (default: no checkpoints)")
args = parser.parse_args()

# ---- data: noisy regression, 1024 samples
g = torch.Generator().manual_seed(0)
x = torch.randn(1024, 20, generator=g)
y = x[:, :3].sum(1, keepdim=True) + 0.1 * torch.randn(1024, 1, generator=g)
train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:896], y[:896]), batch_size=64, shuffle=True)
val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[896:], y[896:]), batch_size=128)


# ---- model
class Regressor(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(20, 512), torch.nn.ReLU(), torch.nn.Linear(512, 1))

    def training_step(self, batch, batch_idx):
        xb, yb = batch
        loss = 0.5 * (self.net(xb) - yb).pow(2).sum(1).mean()
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):  # never sees perturbed weights
        xb, yb = batch
        self.log("val_loss", 0.5 * (self.net(xb) - yb).pow(2).sum(1).mean(), sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)}


# ---- train
L.seed_everything(0, verbose=False)
noise = NoiseInjection(sigma=args.sigma, mode="layer", seed=0)
trainer = L.Trainer(
    max_epochs=args.epochs, accelerator="cpu", devices=args.devices, strategy=args.strategy,
    precision=args.precision, accumulate_grad_batches=args.accumulate, callbacks=[noise], logger=False,
    enable_checkpointing=args.out is not None, default_root_dir=args.out, enable_progress_bar=False,
    enable_model_summary=False,
)
model = Regressor()
trainer.fit(model, train, val)

# ---- result
if trainer.is_global_zero:
    print(f"val_loss {trainer.callback_metrics['val_loss'].item():.4f} after {trainer.global_step} optimizer steps; "
          f"{noise.injector.step} noise draws ({args.accumulate} micro-batches per step, precision {args.precision}, "
          f"{trainer.world_size} process(es))")
