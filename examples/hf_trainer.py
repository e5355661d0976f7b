"""Noise injection in the Hugging Face Trainer with NoiseInjectionCallback (a tiny GPT-2, no downloads).
=====================================================================================================

    python examples/hf_trainer.py [--steps 60] [--accumulate 2]
    torchrun --standalone --nproc_per_node 2 examples/hf_trainer.py

Needs `pip install "noisereg[transformers]"`. The model is built from a config (random weights)
and learns to continue repeating token patterns; the callback draws noise once per optimizer step,
keeps it through all micro-batches of the step, and restores the weights before optimizer.step().
"""

import argparse
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from noisereg.integrations.transformers import NoiseInjectionCallback

parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # the docs gallery runs it without a docstring
parser.add_argument("--steps", type=int, default=60)
parser.add_argument("--sigma", type=float, default=0.01)
parser.add_argument("--accumulate", type=int, default=2)
parser.add_argument("--out", default=None, help="checkpoint directory (default: a temporary one)")
args = parser.parse_args()

# ---- data: sequences that repeat a random 4-token pattern
g = torch.Generator().manual_seed(0)
patterns = torch.randint(0, 32, (256, 4), generator=g)
tokens = patterns.repeat(1, 8)  # (256, 32)
data = [{"input_ids": t, "labels": t} for t in tokens]

# ---- model: a 2-layer GPT-2 from a config, random initial weights
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=32, n_embd=32, n_layer=2, n_head=2))

# ---- train
noise = NoiseInjectionCallback(sigma=args.sigma, mode="layer", seed=0)
with tempfile.TemporaryDirectory() as tmp:
    targs = TrainingArguments(
        output_dir=args.out or tmp, max_steps=args.steps, per_device_train_batch_size=16,
        gradient_accumulation_steps=args.accumulate, learning_rate=3e-3, lr_scheduler_type="cosine",
        save_strategy="steps" if args.out else "no", save_steps=max(1, args.steps // 2), logging_strategy="no",
        report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=data, callbacks=[noise])
    result = trainer.train()

# ---- result; under torchrun also check that every rank draws the same noise (one more draw)
draws, agree = noise.injector.step, True
if torch.distributed.is_available() and torch.distributed.is_initialized():
    with noise.injector.perturb():
        noisy = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(noisy) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, noisy)
    agree = all(torch.equal(t, gathered[0]) for t in gathered)
if trainer.is_world_process_zero():
    print(f"train loss {result.training_loss:.4f} after {trainer.state.global_step} optimizer steps; "
          f"{draws} noise draws over {len(noise.injector.layers)} layers "
          f"({args.accumulate} micro-batches per step, {trainer.args.world_size} process(es)); "
          f"noisy weights agree on all ranks: {agree}")
if not agree:
    raise SystemExit("ranks disagree")
