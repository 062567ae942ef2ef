"""Tasks: what a model learns, and so how zoo reads its data, trains, evaluates and loads it.

`Task` is the interface (zoo.tasks.base); zoo's own implementations are "char-lm" (zoo.tasks.charlm) and
the table tasks "regression" and "tabular-regression" (zoo.tasks.table). A plugin adds a task by
registering a `zoo.TaskSpec` that names its own `Task` subclass (docs/plugins.md). `get(name)` returns the
registered task.
"""

from zoo.tasks.base import Plan, Prepared, Task, TrainedModel, get, to_device
from zoo.tasks.charlm import LoadedModel
from zoo.tasks.table import TaskModel

__all__ = ["LoadedModel", "Plan", "Prepared", "Task", "TaskModel", "TrainedModel", "get", "to_device"]
