"""PyTorch state dicts of nnscratch models, both ways (``docs/interop.md``).

The matching PyTorch model is a ``torch.nn.Sequential`` with one module per nnscratch layer, at
the same index (:func:`to_torch_module` builds it), so a state dict's keys are
``"<index>.<name>"``:

================  =========================  ===================================================
nnscratch layer   torch module               state dict entries (nnscratch array)
================  =========================  ===================================================
Dense(n_in, n)    Linear(n_in, n)            ``weight`` (n, n_in) = ``W.T``; ``bias`` = ``b``
Conv2D            Conv2d(C, O, k, s, p)      ``weight`` (O, C, kH, kW) = ``W`` (same layout);
                                             ``bias`` = ``b``
BatchNorm(F)      BatchNorm1d(F) on rows,    ``weight`` = ``gamma``, ``bias`` = ``beta``,
                  BatchNorm2d(F) on images   ``running_mean``, ``running_var`` (same
                  (same eps and momentum)    conventions: unbiased running variance, momentum
                                             weighting the new batch), ``num_batches_tracked``
                                             (written as 0, ignored on loading: nnscratch does
                                             not count batches; torch reads it only when
                                             ``momentum=None``)
ReLU, LeakyReLU,  ReLU, LeakyReLU(slope),    none
Tanh, Sigmoid,    Tanh, Sigmoid,
GELU(approx.)     GELU(approximate)
Dropout(p)        Dropout(p)                 none
MaxPool2D(k, s)   MaxPool2d(k, s)            none
AvgPool2D(k, s)   AvgPool2d(k, s)            none
GlobalAvgPool2D   Sequential(AdaptiveAvg-    none
                  Pool2d(1), Flatten())
Flatten           Flatten()                  none: both flatten (C, H, W) in row-major order,
                                             so the Dense/Linear after it needs no permutation
================  =========================  ===================================================

:func:`torch_state_dict` with ``numpy=True`` and :func:`load_torch_state_dict` given NumPy arrays
work without PyTorch installed; everything else imports torch when called (never a dependency
of nnscratch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ExportError, InputError, MissingDependencyError

INSTALL_HINT = "this needs PyTorch: pip install torch (it is not a dependency of nnscratch)"


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    return torch


def _entries(model: Any) -> list[tuple[str, Any, str, str, bool]]:
    """(state dict key, layer, "params"/"state", nnscratch name, transposed) for every tensor."""
    from ..config import LAYERS

    out = []
    for i, layer in enumerate(model.layers):
        kind = type(layer).__name__
        if LAYERS.get(kind) is not type(layer):
            raise ExportError(f"layer {i} ({layer!r}): no PyTorch counterpart for layer type "
                              f"{kind} (not one of nnscratch's layers)")
        if kind in ("Dense", "Conv2D"):
            out += [(f"{i}.weight", layer, "params", "W", kind == "Dense"),
                    (f"{i}.bias", layer, "params", "b", False)]
        elif kind == "BatchNorm":
            out += [(f"{i}.weight", layer, "params", "gamma", False),
                    (f"{i}.bias", layer, "params", "beta", False),
                    (f"{i}.running_mean", layer, "state", "running_mean", False),
                    (f"{i}.running_var", layer, "state", "running_var", False)]
    return out


def torch_state_dict(model: Any, *, numpy: bool = False) -> dict[str, Any]:
    """The ``state_dict`` of the matching ``torch.nn.Sequential`` (see the module docstring):
    ``torch.Tensor`` copies in the model's dtype, or NumPy arrays with ``numpy=True`` (no torch
    needed). BatchNorm layers add ``num_batches_tracked`` (0)."""
    to_numpy = model.backend.to_numpy
    arrays: dict[str, np.ndarray] = {}
    for key, layer, where, name, transposed in _entries(model):
        a = np.array(to_numpy(getattr(layer, where)[name]))
        arrays[key] = np.ascontiguousarray(a.T) if transposed else a
        if name == "running_var":
            arrays[key.replace("running_var", "num_batches_tracked")] = np.array(0, np.int64)
    if numpy:
        return arrays
    torch = _import_torch()
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def _as_numpy(value: Any, key: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor (on any device)
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"state dict entry {key!r}: not an array ({exc})") from None


def load_torch_state_dict(model: Any, state_dict: Mapping[str, Any]) -> None:
    """Copy a PyTorch ``state_dict`` of the matching ``torch.nn.Sequential`` into ``model``.

    Keys and shapes must be exactly those :func:`torch_state_dict` writes (``num_batches_tracked``
    may be present or not, and is ignored); values are cast to the model's dtype. Nothing is
    written unless every entry fits: a missing or unexpected key, a wrong shape or a NaN raises
    :class:`~nnscratch.errors.InputError` naming the entry.
    """
    if not isinstance(state_dict, Mapping):
        raise InputError(f"state_dict must be a mapping of names to tensors, got "
                         f"{type(state_dict).__name__}")
    entries = _entries(model)
    expected = {e[0] for e in entries}
    given = {k for k in state_dict if not str(k).endswith(".num_batches_tracked")}
    if given != expected:
        missing, extra = sorted(expected - given), sorted(given - expected, key=str)
        what = (f"missing {missing[:3]}" if missing else "") + (
            ("; " if missing and extra else "") + f"unexpected {extra[:3]}" if extra else "")
        raise InputError(f"state dict does not match the model ({what}); it must hold the "
                         "entries of nnscratch.interop.torch_state_dict(model)")
    values = {}
    for key, layer, where, name, transposed in entries:
        a = _as_numpy(state_dict[key], key)
        target = getattr(layer, where)[name]
        want = target.shape[::-1] if transposed else target.shape
        if a.shape != want:
            raise InputError(f"state dict entry {key!r} has shape {tuple(a.shape)}, the model's "
                             f"{type(layer).__name__} needs {tuple(want)}")
        if a.dtype.kind not in "fiu" or not np.isfinite(a).all():
            raise InputError(f"state dict entry {key!r} must hold finite real numbers")
        values[key] = a.T if transposed else a
    for key, layer, where, name, _ in entries:
        getattr(layer, where)[name] = values[key].astype(model.dtype)


def to_torch_module(model: Any, *, load_weights: bool = True) -> Any:
    """The ``torch.nn.Sequential`` that computes what ``model`` computes (see the module
    docstring), in the model's dtype, in eval mode, holding its weights (``load_weights``).

    It takes (N, C, H, W) images for an image model (``x.reshape(-1, *model.input_shape)`` makes
    them from flat rows) and (N, F) rows otherwise, and returns the logits.
    """
    torch = _import_torch()
    nn = torch.nn
    modules = []
    for i, (layer, out_shape) in enumerate(zip(model.layers, model.output_shapes, strict=True)):
        kind = type(layer).__name__
        if kind == "Dense":
            m = nn.Linear(layer.n_in, layer.n_out)
        elif kind == "Conv2D":
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          stride=layer.stride, padding=layer.padding)
        elif kind == "BatchNorm":
            bn = nn.BatchNorm2d if len(out_shape) == 3 else nn.BatchNorm1d
            m = bn(layer.num_features, eps=layer.eps, momentum=layer.momentum)
        elif kind == "ReLU":
            m = nn.ReLU()
        elif kind == "LeakyReLU":
            m = nn.LeakyReLU(layer.negative_slope)
        elif kind == "Tanh":
            m = nn.Tanh()
        elif kind == "Sigmoid":
            m = nn.Sigmoid()
        elif kind == "GELU":
            m = nn.GELU(approximate=layer.approximate)
        elif kind == "Dropout":
            m = nn.Dropout(layer.p)
        elif kind == "MaxPool2D":
            m = nn.MaxPool2d(layer.kernel_size, layer.stride)
        elif kind == "AvgPool2D":
            m = nn.AvgPool2d(layer.kernel_size, layer.stride)
        elif kind == "GlobalAvgPool2D":
            m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        elif kind == "Flatten":
            m = nn.Flatten()
        else:
            raise ExportError(f"layer {i} ({layer!r}): no PyTorch counterpart for layer type {kind}")
        modules.append(m)
    net = nn.Sequential(*modules)
    net = net.double() if model.dtype == np.float64 else net.float()
    if load_weights:
        net.load_state_dict(torch_state_dict(model))
    return net.eval()
