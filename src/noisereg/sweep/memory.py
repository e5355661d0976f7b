"""A run's memory, estimated before anything is allocated, and refused when it cannot fit.

The model is built on PyTorch's ``meta`` device (shapes, no storage) and run forward on a meta batch
of the training batch's shape; forward hooks add up the outputs of the leaf modules. The estimate is

    bytes ≈ 4 · P · b  +  3 · A · b

with P the parameter count, A the activations of one forward pass at the training batch size and b
the bytes per element: the weights, their gradient, the optimizer's momentum and the perturbed copy
the injector swaps in (4 copies of P), and the activations kept for backward, their gradients and an
evaluation pass (3 copies of A). It is a lower-bound-minded estimate, meant to catch settings that
cannot run (``--set hidden=100000000,100000000``) before they fail deep inside the allocator, not
to predict peak memory.
"""

from __future__ import annotations

import os

import torch

from noisereg.errors import UserError


def footprint(model_fn, x_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> tuple[int, int]:
    """``(parameters, estimated bytes)`` of ``model_fn()`` trained on batches of shape ``x_shape`` (module docstring)."""
    with torch.device("meta"):
        model = model_fn()
    params = sum(p.numel() for p in model.parameters())
    acts = 0

    def count(module, args, out):
        nonlocal acts
        acts += sum(t.numel() for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.empty(x_shape, device="meta", dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    size = torch.empty((), dtype=dtype).element_size()
    return params, (4 * params + 3 * acts) * size


def available_bytes(device: str | torch.device) -> int | None:
    """Memory free for a run on ``device``: the GPU's free memory, or the machine's available RAM (Linux
    ``MemAvailable``, else free physical pages); None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(model_fn, x_shape: tuple[int, ...], device: str | torch.device, what: str) -> None:
    """Raise a one-line :class:`UserError` when ``model_fn()``'s estimated footprint exceeds the free memory.

    Raises:
        UserError: naming ``what`` (the run or variant), the parameter count, the estimate and the memory free.
    """
    try:
        params, need = footprint(model_fn, x_shape)
    except (RuntimeError, NotImplementedError, TypeError):
        return  # a model that cannot be traced on the meta device is not estimated
    free = available_bytes(device)
    if free is not None and need > free:
        raise UserError(f"{what}: the model has {params:,} parameters and needs about {need / 2**30:,.1f} GiB "
                        f"(weights, gradients, momentum, the noisy copy, activations of a batch of {x_shape[0]}), "
                        f"but {free / 2**30:,.1f} GiB are free on {torch.device(device).type}: make it smaller")
