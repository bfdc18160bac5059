"""Taking a model elsewhere: ONNX export and PyTorch state dicts (``docs/interop.md``).

- :func:`export_onnx` / :func:`to_onnx_model` (``model.to_onnx(path)``, ``nnscratch export``):
  :mod:`.onnx_export`, needs ``pip install 'nnscratch[onnx]'``.
- :func:`torch_state_dict`, :func:`load_torch_state_dict`, :func:`to_torch_module`:
  :mod:`.pytorch`; PyTorch is optional and imported only when a function needs it.

Neither onnx nor torch is imported by ``import nnscratch.interop``.
"""

from __future__ import annotations

from .onnx_export import export_onnx, to_onnx_model
from .pytorch import load_torch_state_dict, to_torch_module, torch_state_dict

__all__ = ["export_onnx", "load_torch_state_dict", "to_onnx_model", "to_torch_module",
           "torch_state_dict"]
