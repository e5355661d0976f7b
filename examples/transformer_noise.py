"""Layer-wise noise on a tiny transformer in the Hugging Face Trainer, on generated modular addition (no downloads).
=================================================================================================================

    python examples/transformer_noise.py [--steps 300] [--sigma 0.02] [--p 23]

Needs `pip install "noisereg[transformers]"`. A 1-layer GPT-2 built from a config (random weights) reads
``a b =`` and is trained, with cross-entropy on the answer token only, to continue it with ``(a + b) mod p``;
NoiseInjectionCallback perturbs one module at a time (``mode="layer"``: each of GPT-2's modules with
parameters, the fused query-key-value projection included, is a layer) before every optimizer step and
restores the weights before the step is applied. At the end it prints training and test accuracy and
Hutchinson's estimate of the Hessian trace of the training loss (noisereg.hessian_trace, which runs
GPT-2's scaled-dot-product attention on its differentiable math kernel).
"""

import argparse
import tempfile

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import noisereg as nr
from noisereg.data.modular import modular_addition
from noisereg.integrations.transformers import NoiseInjectionCallback

parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # the docs gallery runs it without a docstring
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--sigma", type=float, default=0.02)
parser.add_argument("--p", type=int, default=23)
args = parser.parse_args()

# ---- data: "a b = c" with c = (a + b) mod p; the loss reads the answer token only (labels -100 elsewhere)
split = modular_addition(args.p, train_fraction=0.5, seed=0)


def rows(x, y):
    ids = torch.cat([x.long(), y[:, None]], 1)   # (n, 4): a, b, =, answer
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]                     # GPT-2 shifts labels: position 2 predicts position 3
    return [{"input_ids": i, "labels": lab} for i, lab in zip(ids, labels)]


# ---- model: a 1-layer GPT-2 from a config, random weights, vocabulary p + 1 (the tokens and "=")
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=args.p + 1, n_positions=4, n_embd=64, n_layer=1, n_head=4,
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=args.p,
                                   eos_token_id=args.p))

# ---- train: AdamW (the Trainer's default) with layer-wise noise, full batch
noise = NoiseInjectionCallback(sigma=args.sigma, mode="layer", seed=0)
with tempfile.TemporaryDirectory() as tmp:
    targs = TrainingArguments(output_dir=tmp, max_steps=args.steps, per_device_train_batch_size=len(split.x_train),
                              learning_rate=3e-3, weight_decay=0.0, lr_scheduler_type="constant", save_strategy="no",
                              logging_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=rows(split.x_train, split.y_train), callbacks=[noise])
    trainer.train()


# ---- evaluate: the answer logits as a classifier over the p residues
class Answer(nn.Module):
    """``x`` (n, 3) tokens -> logits (n, p) of the answer, read at the "=" position."""

    def __init__(self, lm, p):
        super().__init__()
        self.lm, self.p = lm, p

    def forward(self, x):
        return self.lm(input_ids=x.long()).logits[:, -1, :self.p]


clf = Answer(model, args.p).eval()
with torch.no_grad():
    acc = {name: float((clf(x).argmax(1) == y).float().mean()) for name, x, y in split.splits()}
trace, se = nr.hessian_trace(clf, split.x_train[:128], split.y_train[:128], "cross_entropy", num_samples=20)
print(f"{trainer.state.global_step} optimizer steps, {noise.injector.step} noise draws over "
      f"{len(noise.injector.layers)} layers (sigma={args.sigma:g}); train accuracy {100 * acc['train']:.1f} %, "
      f"test accuracy {100 * acc['test']:.1f} %; Hessian trace {trace:.4g} ± {se:.2g} (Hutchinson, 20 probes)")
