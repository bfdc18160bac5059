"""Fast kernels for single layers in accelerated training and prediction (placeholder)."""

from __future__ import annotations

from typing import Any

#: layer class -> kernel class (exact types)
KERNELS: dict[type, Any] = {}
