"""How the trainable parameters of a model form the layers that noise is injected into.

A *layer* is a named list of parameters that is perturbed as one block (docs/THEORY.md §2:
layer-wise noise picks one of the M layers uniformly at random). Three ways to form them:

* ``"module"`` (default): the parameters a module owns directly (``recurse=False``) form one
  layer, named by the module's qualified name (``"0"``, ``"features.conv1"``; ``"(root)"`` for the
  model itself). A ``Linear`` layer's weight and bias are one layer, as in the paper.
* ``"tensor"``: every parameter tensor is its own layer, named by its qualified parameter name
  (``"0.weight"``). This is the official code's convention (weight, bias, BatchNorm γ and β each
  count).
* an explicit list of ``(name, [Parameter, ...])`` groups.

Only parameters with ``requires_grad=True`` take part. A parameter registered under several
modules (weight tying) is one parameter and belongs to the first module that registers it, as in
``nn.Module.named_parameters``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

LAYER_SCHEMES = ("module", "tensor")

Layer = tuple[str, list[torch.Tensor]]


def _named_trainable(model: nn.Module | Iterable[torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """Return the trainable parameters of ``model`` with qualified names, deduplicated, in order."""
    if isinstance(model, nn.Module):
        named = list(model.named_parameters())  # removes duplicates (tied weights) already
    elif isinstance(model, torch.Tensor):
        raise TypeError(
            "model must be an nn.Module or an iterable of Parameters, got a single Tensor; "
            "wrap it in a list: NoiseInjector([param], ...)"
        )
    elif isinstance(model, Iterable):
        named, seen = [], set()
        for i, p in enumerate(model):
            if not isinstance(p, torch.Tensor):
                raise TypeError(
                    f"model must be an nn.Module or an iterable of Parameters; "
                    f"item {i} is a {type(p).__name__}"
                )
            if id(p) not in seen:
                seen.add(id(p))
                named.append((str(i), p))
    else:
        raise TypeError(
            f"model must be an nn.Module or an iterable of Parameters, got {type(model).__name__}"
        )
    return [(n, p) for n, p in named if p.requires_grad]


def resolve_layers(
    model: nn.Module | Iterable[torch.Tensor],
    layers: str | Sequence[tuple[str, Iterable[torch.Tensor]]] = "module",
) -> list[Layer]:
    """Group the trainable parameters of ``model`` into named layers, in model order.

    Args:
        model: an ``nn.Module``, or an iterable of parameters (then ``"module"`` and ``"tensor"``
            both make every tensor a layer, named by its position).
        layers: ``"module"``, ``"tensor"``, or a list of ``(name, [Parameter, ...])`` groups.

    Returns:
        A list of ``(name, [Parameter, ...])``; every parameter appears in exactly one layer.

    Raises:
        TypeError: ``model`` or ``layers`` has the wrong type.
        ValueError: no trainable parameters; unknown scheme; an empty group, a duplicated group
            name, a parameter listed twice, a frozen parameter, or one that is not in ``model``.
    """
    named = _named_trainable(model)
    if not named:
        raise ValueError(
            "model has no trainable parameters (none with requires_grad=True): there is nothing "
            "to inject noise into; unfreeze some parameters or pass them explicitly"
        )
    if isinstance(layers, str):
        if layers == "tensor" or not isinstance(model, nn.Module):
            if layers not in LAYER_SCHEMES:
                raise ValueError(f"layers must be one of {LAYER_SCHEMES} or a list of groups, got {layers!r}")
            return [(name, [p]) for name, p in named]
        if layers != "module":
            raise ValueError(f"layers must be one of {LAYER_SCHEMES} or a list of groups, got {layers!r}")
        groups: dict[str, list[torch.Tensor]] = {}
        for name, p in named:
            owner = name.rpartition(".")[0] or "(root)"
            groups.setdefault(owner, []).append(p)
        return list(groups.items())
    return _explicit_groups(named, layers, check_membership=isinstance(model, nn.Module))


def _explicit_groups(named, layers, check_membership: bool) -> list[Layer]:
    if not isinstance(layers, Sequence) or isinstance(layers, (str, bytes)):
        raise TypeError(
            f"layers must be 'module', 'tensor' or a list of (name, [Parameter, ...]) groups, "
            f"got {type(layers).__name__}"
        )
    if len(layers) == 0:
        raise ValueError("layers is an empty list of groups; give at least one (name, [Parameter, ...]) group")
    in_model = {id(p) for _, p in named}
    owner_of: dict[int, str] = {}
    result: list[Layer] = []
    for item in layers:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(f"each group must be a (name, [Parameter, ...]) pair, got {item!r:.80}")
        name, params = item[0], list(item[1])
        if any(name == n for n, _ in result):
            raise ValueError(f"group name {name!r} is used twice; group names must be unique")
        if not params:
            raise ValueError(f"group {name!r} is empty; every group needs at least one parameter")
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"group {name!r} holds a {type(p).__name__}, not a Parameter")
            if not p.requires_grad:
                raise ValueError(
                    f"group {name!r} holds a frozen parameter (requires_grad=False); "
                    "only trainable parameters can be perturbed"
                )
            if check_membership and id(p) not in in_model:
                raise ValueError(f"group {name!r} holds a parameter that is not a parameter of model")
            if owner_of.get(id(p)) == name:
                raise ValueError(f"a parameter is listed twice in group {name!r}")
            if id(p) in owner_of:
                raise ValueError(
                    f"a parameter is listed in two groups ({owner_of[id(p)]!r} and {name!r}); "
                    "each parameter may belong to one group only"
                )
            owner_of[id(p)] = name
        result.append((name, params))
    return result
