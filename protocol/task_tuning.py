"""Per-task DP-SGD defaults of a job, filled into ``JobSpec`` when the analyst leaves them at 0.

On standardised features the defaults ARE the schedule rule of ``models.dp_schedule`` in its
tight-clip regime (batch 256, C = 0.3, lr = the task's step lr · C over C), which is what the rule
picks for nodes of a few hundred to a few thousand members at ε ≤ 8. A job that leaves the whole
schedule to the platform (``JobSpec.schedule_by_rule``) is rescheduled by the rule itself once the
coordinator knows the nodes' rounded member counts (``coordinator.job_lifecycle``); these defaults
are what runs when it cannot know them (a job on the public scaling, with no moments query).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.dp_schedule import MIN_BATCH, TIGHT_CLIP, tight_step
from models.task import ModelKind, Task

__all__ = ["TASK_TUNING", "TaskTuning"]


@dataclass(frozen=True)
class TaskTuning:
    """Per-task DP-SGD defaults: expected Poisson batch, learning rate and clipping norm.

    On standardised features: the rule's tight regime (``models.dp_schedule``, module docstring:
    batch at σ ≈ 1 floored at 256, C = 0.3 clipping nearly every member's gradient so the noise σC
    falls while the ranking direction survives, lr · C the task's step). On the public scaling
    alone the features are poorly conditioned and need larger steps (lr 3 and 8, propensity with
    C = 1), measured on Complete Journey (bench/fl_utility.py).
    """

    batch_size: int
    learning_rate: float
    max_grad_norm: float


def _rule(task: Task, model: ModelKind) -> TaskTuning:
    return TaskTuning(
        batch_size=MIN_BATCH, learning_rate=tight_step(task, model) / TIGHT_CLIP, max_grad_norm=TIGHT_CLIP
    )


# (task, network, standardised features?) -> defaults.
_CHURN, _PROPENSITY, _LOGREG, _MLP = Task.CHURN, Task.PROPENSITY, ModelKind.LOGREG, ModelKind.MLP
TASK_TUNING = {
    **{(task, model, True): _rule(task, model) for task in Task for model in ModelKind},
    (_CHURN, _LOGREG, False): TaskTuning(batch_size=256, learning_rate=3.0, max_grad_norm=0.3),
    (_PROPENSITY, _LOGREG, False): TaskTuning(batch_size=256, learning_rate=8.0, max_grad_norm=1.0),
    (_CHURN, _MLP, False): TaskTuning(batch_size=256, learning_rate=3.0, max_grad_norm=0.3),
    (_PROPENSITY, _MLP, False): TaskTuning(batch_size=256, learning_rate=8.0, max_grad_norm=1.0),
}
