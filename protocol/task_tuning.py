"""Per-task DP-SGD defaults of a job, filled into ``JobSpec`` when the analyst leaves them at 0."""

from __future__ import annotations

from dataclasses import dataclass

from models.task import ModelKind, Task

__all__ = ["TASK_TUNING", "TaskTuning"]


@dataclass(frozen=True)
class TaskTuning:
    """Per-task DP-SGD defaults, tuned on Complete Journey's training members (bench/fl_utility.py).

    Chosen with an in-process simulation of the same FedAvg / Opacus maths over many noise draws,
    never on the held-out members' labels alone. A store group holds ~400 labelled churn members but
    only ~220 campaign recipients. Large Poisson batches (q = 1/2 for churn, q = 1 for propensity)
    keep the noise per step small relative to the summed gradient (Ponomareva et al., "How to DP-fy
    ML", JAIR 77, 2023, §5.4), and a tight clipping norm C = 0.3 clips nearly every member's gradient,
    which keeps the direction that ranks members (what AUC measures) while the noise, proportional
    to C, falls. On standardised features (the default) the step lr·C is 0.3 for churn and 2.4 for
    propensity; on the public scaling alone the features are poorly conditioned and need larger
    steps (lr 3 and 8, propensity with C = 1).
    """

    batch_size: int
    learning_rate: float
    max_grad_norm: float


# (task, network, standardised features?) -> defaults. The MLP's (ReLU layers of width 32, so
# gradients spread over ~1,700 weights) were checked on standardised features only: lr 4 for both
# tasks (the logistic regression's lr 1 / 8 gave 0.740 / 0.725 where lr 4 gave 0.758 / 0.733, churn
# at ε = 3 and propensity at ε = 1); on the public scaling it keeps the logistic values.
_CHURN, _PROPENSITY, _LOGREG, _MLP = Task.CHURN, Task.PROPENSITY, ModelKind.LOGREG, ModelKind.MLP
TASK_TUNING = {
    (_CHURN, _LOGREG, True): TaskTuning(batch_size=256, learning_rate=1.0, max_grad_norm=0.3),
    (_PROPENSITY, _LOGREG, True): TaskTuning(batch_size=256, learning_rate=8.0, max_grad_norm=0.3),
    (_CHURN, _MLP, True): TaskTuning(batch_size=256, learning_rate=4.0, max_grad_norm=0.3),
    (_PROPENSITY, _MLP, True): TaskTuning(batch_size=256, learning_rate=4.0, max_grad_norm=0.3),
    (_CHURN, _LOGREG, False): TaskTuning(batch_size=256, learning_rate=3.0, max_grad_norm=0.3),
    (_PROPENSITY, _LOGREG, False): TaskTuning(batch_size=256, learning_rate=8.0, max_grad_norm=1.0),
    (_CHURN, _MLP, False): TaskTuning(batch_size=256, learning_rate=3.0, max_grad_norm=0.3),
    (_PROPENSITY, _MLP, False): TaskTuning(batch_size=256, learning_rate=8.0, max_grad_norm=1.0),
}
