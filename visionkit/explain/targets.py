"""Finding a task's explain facet (``Task.explainer``, a subclass of visionkit.tasks.explain_base.Explainer in the
task's own folder)."""

from __future__ import annotations

from visionkit.errors import UsageError
from visionkit.tasks.explain_base import Explainer


def explainer_for(task) -> Explainer:
    """A fresh adapter for ``task`` (a Task); a clear error for a task without one."""
    cls = getattr(task, "explainer", None)
    if cls is None:
        raise UsageError(
            f"task '{task.name}' cannot be explained: it declares no explain facet (a task adds one by setting "
            f"`explainer` on its Task class to a subclass of visionkit.tasks.explain_base.Explainer)"
        )
    return cls()
