"""zoo: the models of fast.ai's Lesson 6 ("RNNs from scratch") as a plugin-based model zoo.

Importing zoo does not import torch; `zoo.train`, `zoo.load`, `zoo.evaluate` and `zoo.CharModel` do,
when first used.
"""

from __future__ import annotations

from typing import Any

from zoo.hookspecs import hookimpl
from zoo.spec import Batching, DatasetInfo, ModelSpec, Reference, Stage, TaskSpec

__version__ = "0.1.0"
# The name on PyPI (`zoo` there is an unrelated package); what `pip install` and a plugin's dependencies name.
DISTRIBUTION = "lesson6-zoo"

__all__ = [
    "DISTRIBUTION",
    "Batching",
    "CharModel",
    "DatasetInfo",
    "FileDataset",
    "ModelSpec",
    "Reference",
    "Stage",
    "TaskSpec",
    "__version__",
    "hookimpl",
    "list_models",
    "evaluate",
    "explain",
    "load",
    "train",
]

# FileDataset lives in the data layer (below the api, above this module); it imports no torch
_LAZY = {
    "CharModel": "zoo.model",  # a torch.nn.Module: torch is imported when it is first used
    "FileDataset": "zoo.data.sources",
    "train": "zoo.api",
    "load": "zoo.api",
    "evaluate": "zoo.api",
    "list_models": "zoo.registry",
    "explain": "zoo.explanation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
