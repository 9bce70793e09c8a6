"""The DP-SGD schedule of a federated job, chosen by a rule from what the coordinator may know.

The coordinator may know the task, the network, (ε, δ) and each node's member count ROUNDED to two
significant figures (a node's schema summary carries rounded row counts, DESIGN.md). Nothing here
looks at member data, so choosing the schedule costs no privacy budget and needs no accounting.

The rule, and why
-----------------
Each node runs T = rounds × local_steps DP-SGD steps with Poisson rate q = B / n, per-example
clipping at C and Gaussian noise σC on the summed clipped gradient (Abadi et al., CCS 2016); σ is
calibrated by the node so the whole job spends exactly (ε, δ). In the central-limit view of
subsampled Gaussian DP-SGD (Dong, Roth & Su, "Gaussian Differential Privacy", JRSS-B 84(1), 2022,
§5; Bu et al., "Deep Learning with Gaussian Differential Privacy", HDSR 2020) the job is μ-GDP with

    μ = q · sqrt(T · (exp(1 / σ²) − 1)),

and μ is fixed by (ε, δ). The noise on the averaged gradient of one step is σC / B:

1. **Batch.** For σ ≳ 1, exp(1/σ²) − 1 ≈ 1/σ², so σ ∝ q and σC/B = σC/(qn) no longer depends on
   B: a larger batch buys nothing but compute. For σ < 1 the exponential makes σ fall faster than
   q and the noise per averaged gradient grows. So the efficient batch is the one at σ = 1:
   q₁ = μ / sqrt(T (e − 1)), B = q₁ n. It is floored at 256 (the Complete Journey tuning: at a few
   hundred members a node runs near-full batches, q ≈ 1/2, and σ > 1) and capped at 16,384 members
   a step (compute) and at the node's own count. B is set from the SMALLEST node, so every node
   runs at σ ≥ 1 and none pays the inefficient regime.
2. **Clipping.** With σ ≥ 1 the noise on the final averaged model is, relative to a clipped
   gradient, about ν = σ / (B · sqrt(K)) per step for K nodes. A tight clip (C = 0.3 on
   standardised features, where ‖x‖ ≈ 1 and a logistic gradient is |p − y| ‖x‖) normalises almost
   every member's gradient: it keeps the noise small in absolute terms but moves the fixed point
   away from the maximum-likelihood fit -- worth it when noise dominates, a pure loss when it does
   not. The rule clips tightly (C = 0.3) while ν·sqrt(d) > 0.02 -- the noise norm is then still a
   noticeable share of a clipped gradient -- and loosely (C = 1, which clips only large residuals
   on large feature vectors) below it.
3. **Step size.** Under the tight clip almost every gradient is clipped, so lr · C is the step that
   moves the weights; it keeps the task's value (0.3 for churn, 2.4 for propensity: Complete
   Journey, bench/fl_utility.py), a deliberately short walk that regularises a noisy fit. Under the
   loose clip gradients keep their size and the problem is plain logistic regression on
   standardised features: every coordinate has variance 1/d (scale std·sqrt(d)), so the bulk of the
   Hessian's eigenvalues are about p(1 - p)/d ≈ 0.01 and reaching the fit in T = 40 steps needs
   lr · T · 0.01 of a few, lr ≈ 5 to 10; the largest eigenvalue (the intercept's, at most 1/4) and
   the server's momentum of 0.5 (which doubles the effective step) cap it: lr = 5. Measured on
   a synthetic federation of 17,000 training members with the loose clip at ε = 3 (centralised
   DP-SGD, 40 steps): lr 0.3 -> 0.835, 3 -> 0.852, 10 -> 0.860, against 0.866 for the converged
   non-private fit; with the tight clip 0.834 to 0.837. On Complete Journey (1,600 members, the
   tight regime) the tight clip wins at every ε (ε = 8: 0.766 against 0.755 with lr 8, C = 1).

4. **Steps.** With σ ≥ 1, σ grows like q·sqrt(T), so σC/B -- and the noise-to-signal ratio of the
   final model -- does not depend on T: in the loose regime more steps cost compute, not accuracy.
   The loose regime therefore runs 20 local steps a round (T = 160) where the tight one keeps 5
   (T = 40, the short walk being its regulariser). Same synthetic federation, ε = 3, lr 5, C = 1:
   T = 40 -> 0.856, T = 160 -> 0.860 (0.866 converged, non-private).

5. **Small nodes stay tight.** Rules 1, 2 and 4 rest on the central-limit view, which holds for
   small sampling rates; a node of a few hundred to a couple of thousand members runs the floored
   batch of 256, q = 0.1 to 0.5, near-full batches where a step is close to full-batch gradient
   descent with noise. There the loose regime's long walk at lr 5 did worse than the tight one even
   when the noise share was small: at ε = 8, short-history-jpy-1k (smallest node ~600 training
   members, q ≈ 0.4) fell to 0.769 against 0.789 at ε = 3, and on Complete Journey (1,600 members,
   q = 0.16) the tight clip won at ε = 8 (above). So the loose regime also needs q ≤ 1/8 at the
   smallest node. The bound sits between the measured cases: the rule's own efficient batch gives
   q = μ / sqrt(T (e − 1)) ≈ 0.1 at ε = 8 and less below, so a 10^4-member node keeps the loose
   regime at every ε from 1 to 8 (q = 0.03 to 0.10; cj-like-10k matches centralized at ε = 3,
   q = 0.04), while only the floor pushes a node above 1/8 (q ≥ 0.16 under 1,600 members).
   Measured at ε = 8 (bench/fl_generalisation.py, 3 runs each, same quiet machine, same hour),
   loose against tight: cj-like-1k 0.801 against 0.785 (centralized 0.802), short-history-jpy-1k
   0.773 against 0.786 (centralized 0.808); the loose clip with 5 local steps instead of 20 gave
   0.788 and 0.775, so the clip, not the walk's length, is what costs the short histories. The
   tight regime has the smaller worst gap across shapes (0.022 against 0.035) and no shape then
   scores lower at ε = 8 than at ε = 3 beyond run-to-run noise; the loose one wins cj-like-1k. A
   rule must hold across shapes, so the worst case decides.

6. **The intercept's input.** A member's logistic gradient is (p − y)(x, 1); with ‖x‖² ≈ 1 on
   standardised features the intercept takes half of every clipped gradient's squared norm, for a
   coordinate that carries no ranking information and whose gradient (the mean residual) points the
   same way for every member, so it needs the least of the budget. Feeding it s instead of 1
   (`models.scaled_intercept`: same logits, b / s stored) leaves it s² / (1 + s²) of the clip and
   the features the rest, at the price of an intercept s² times as slow. Where clipping binds (the
   tight regime) the features' signal per unit of noise grows by up to sqrt((1 + 1) / (1 + s²));
   too small an s starves the intercept, which the residuals' weighting needs. s = 1/2 (a fifth of
   the budget, a quarter of the intercept's step) is the one value of the grid that helped every
   tight-regime task measured but one, Complete Journey churn, which loses 0.0015 and stays above
   centralized (0.749): bench/dp_recipe_emulation.py, mean of 16-24 noise draws at ε = 3,
   s = 1 -> 1/2 -> 1/4: Complete Journey propensity 0.8036 -> 0.8062 -> 0.8083, churn 0.7700 ->
   0.7685 -> 0.7680, cj-like-1k churn 0.7845 -> 0.7887 -> 0.7912, short-history-jpy-1k churn 0.7875
   -> 0.7915 -> 0.7933, and the synthetic propensity tasks cj-like-1k 0.7200 -> 0.7214 -> 0.7056 and
   short-history-jpy-1k 0.7029 -> 0.7116 -> 0.6953 (s = 1/4 starves their intercepts, base rates
   of 15 to 25 %); at ε = 1 and 8 the same ordering, with the run-to-run spread smaller at s = 1/2
   in every task. The loose regime, where clipping rarely binds, does not notice (cj-like-10k
   0.7930 -> 0.7932, newcomers-10k 0.8573 -> 0.8573). It is the node's parametrisation of logistic
   regression under DP-SGD (`participant_node.training.dp_sgd`), not a job field; the MLP and a job
   on the public scaling (not standardised: ‖x‖ is not about 1 and the intercept also carries the
   features' offset) keep 1, as they were not measured.
   Through the job path (bench/fl_generalisation.py, medians of 3 runs, input 1 -> 1/2): at ε = 3
   Complete Journey propensity 0.797-0.801 -> 0.8092, 0.8042 and 0.8066 (three sets of three),
   churn 0.771 -> 0.770, cj-like-1k 0.788 -> 0.789, short-history-jpy-1k 0.789 -> 0.793,
   cj-like-10k 0.793 -> 0.793, one-off-10k 0.871 -> 0.873, newcomers-10k 0.856 -> 0.856,
   high-churn-10k 0.749 -> 0.750; at ε = 1 / 8 cj-like-1k 0.784 / 0.785 -> 0.791 / 0.789,
   short-history-jpy-1k 0.786 / 0.786 -> 0.790 / 0.792, Complete Journey churn 0.769 / 0.771 ->
   0.766 / 0.769, propensity 0.794 / 0.805 -> 0.799 / 0.808.

Rounds stay 8: the server-side momentum and the averaging of the last rounds were chosen for them.

Where the rule falls short (bench/fl_generalisation.py, ε = 3, medians of 3 runs with fresh noise,
features v5): at 10^4 members per node (loose regime) the federated model matches centralized
non-private (cj-like-10k 0.794 against 0.794); at 10^3 members per node (tight regime) it stays
0.023 to 0.034 under it (cj-like-1k 0.779 against 0.802, short-history-jpy-1k 0.778 against
0.811), though above the plain-RFM floor (0.765, 0.764). Complete Journey (tight regime, 1,600
training members) is at or above centralized for churn (0.764 against 0.752) and 0.009 under it
for propensity (0.801 against 0.810).

No schedule closes the 10^3 gap. In 5-fold cross-validation on the TRAINING members of seed-11 draws
of both shapes (DP-SGD emulated at ε = 3), a grid over C ∈ {0.1, 0.3, 1}, lr · C ∈ {0.3, 1, 2.4, 6},
5 or 20 local steps, 8 or 16 rounds, server momentum 0 to 0.8 and averaging the last 1 to 8 models
improved the AUC by at most 0.007, the best setting staying 0.007 to 0.012 under the L-BFGS fit, as
rule 4 predicts: with σ ≥ 1 the noise-to-signal ratio of the final model depends on n, μ and the
number of nodes, not on T, lr or C. What moved it is the number of columns, each one more coordinate
of noise: without the three annualised rates and the two linear day columns (16 instead of 21),
cj-like-1k rose from 0.768 to 0.780 (L-BFGS 0.781), short-history-jpy-1k from 0.713 to 0.718,
Complete Journey churn from 0.765 to 0.768, propensity unchanged (0.788 / 0.787), and cj-like-10k
and one-off-10k unchanged within 0.001 (one-off-10k's L-BFGS fit lost 0.002).

On the job path (same bench, ε = 3, medians of 3 runs) the 16 columns closed cj-like-1k (0.802
against 0.802) but cost Complete Journey propensity (0.792, from 0.801) and gained less on
short-history-jpy-1k (0.785 against 0.808); features v6 drops only the two linear day columns
(`models.feature_schema`): cj-like-1k 0.782 against 0.802 (gap 0.020, at the target's edge),
short-history-jpy-1k 0.790 against 0.807 (0.018), cj-like-10k 0.794 against 0.793, Complete Journey
churn 0.769 and propensity 0.804. Features v7 also drops the two rates annualised over the member's
history (17 columns): cj-like-1k 0.788 against 0.802 (gap 0.014), short-history-jpy-1k 0.789
against 0.808 (0.019), cj-like-10k 0.793 against 0.793, Complete Journey churn 0.771 and propensity
0.801 -- every ε = 3 target met, propensity at its edge.

Two limits of the tight regime, measured with bench/dp_recipe_emulation.py (the job's arithmetic in
numpy, 24 noise draws per figure, ε = 3): Complete Journey propensity is held by the short walk, not
the noise (mean 0.802 with the noise, 0.804 without; a walk twice as long gives 0.806 there but
costs the synthetic shapes' propensity 0.002 to 0.008), and the result depends on the job's initial
model (``JobSpec.seed``), whose random direction the short walk never leaves: up to ±0.013 across
seeds on the 10^3 shapes and Complete Journey churn. A zero start lands near the seeds' average; on
the job path it cost short-history-jpy-1k 0.003 (gap 0.022), so the seeded start stays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from models.task import ModelKind, Task

__all__ = [
    "DpSgdSchedule",
    "dp_sgd_schedule",
    "gdp_mu",
    "intercept_input",
    "rounded_member_count",
    "tight_step",
]

ROUNDS, LOCAL_STEPS, LOOSE_LOCAL_STEPS = 8, 5, 20
MIN_BATCH, MAX_BATCH = 256, 16_384
TIGHT_CLIP, LOOSE_CLIP = 0.3, 1.0
_LOOSE_LR = {ModelKind.LOGREG: 5.0, ModelKind.MLP: 1.2}
NOISE_SHARE_FOR_LOOSE_CLIP = 0.02
MAX_SAMPLE_RATE_FOR_LOOSE_CLIP = 0.125
# lr · C per task and network (Complete Journey tuning on standardised features, bench/fl_utility.py).
_STEP = {
    (Task.CHURN, ModelKind.LOGREG): 0.3,
    (Task.PROPENSITY, ModelKind.LOGREG): 2.4,
    (Task.CHURN, ModelKind.MLP): 1.2,
    (Task.PROPENSITY, ModelKind.MLP): 1.2,
}


# Rule 6: the intercept's input while a node trains logistic regression by DP-SGD.
LOGREG_INTERCEPT_INPUT = 0.5


def intercept_input(model: ModelKind | str, *, standardised: bool) -> float:
    """The intercept's input during DP-SGD (rule 6 of the module docstring): 1/2 for logistic
    regression on standardised features (where ‖x‖² ≈ 1, the rule's premise), else 1 (the plain
    parametrisation: the MLP and the public scaling, where it was not measured)."""
    return LOGREG_INTERCEPT_INPUT if standardised and ModelKind(model) is ModelKind.LOGREG else 1.0


def tight_step(task: Task | str, model: ModelKind | str) -> float:
    """lr · C of the tight-clip regime for ``task`` and ``model`` (rule 3 of the module docstring)."""
    return _STEP[Task(task), ModelKind(model)]


@dataclass(frozen=True)
class DpSgdSchedule:
    """Batch size, learning rate, clipping norm, rounds and local steps of a job."""

    batch_size: int
    learning_rate: float
    max_grad_norm: float
    rounds: int
    local_steps: int
    noise_multiplier_estimate: float  # σ at the smallest node (GDP approximation)

    def job_fields(self) -> dict[str, int | float]:
        """The job's fields this schedule sets (names as in the coordinator's job configuration)."""
        return {
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "max_grad_norm": self.max_grad_norm,
            "rounds": self.rounds,
            "local_steps": self.local_steps,
        }


def rounded_member_count(n: int) -> int:
    """``n`` rounded to two significant figures: what a node discloses about its size."""
    if n < 0:
        raise ValueError(f"a member count cannot be negative, got {n}")
    if n == 0:
        return 0
    digits = math.floor(math.log10(n)) - 1
    return int(round(n, -digits)) if digits > 0 else n


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _gdp_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of μ-GDP (Dong, Roth & Su 2022, Cor. 2.13)."""
    return _phi(-epsilon / mu + mu / 2) - math.exp(epsilon) * _phi(-epsilon / mu - mu / 2)


def gdp_mu(*, epsilon: float, delta: float) -> float:
    """The largest μ such that μ-GDP implies (ε, δ)-DP (bisection; δ(ε) grows with μ)."""
    if epsilon <= 0 or not 0 < delta < 1:
        raise ValueError(f"need epsilon > 0 and delta in (0, 1), got {epsilon}, {delta}")
    low, high = 1e-6, 1.0
    while _gdp_delta(high, epsilon) < delta:
        high *= 2.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _gdp_delta(middle, epsilon) < delta else (low, middle)
    return low


def _sigma(mu: float, sample_rate: float, steps: int) -> float:
    """σ with μ = q sqrt(T (exp(1/σ²) − 1)) (CLT view of subsampled Gaussian DP-SGD)."""
    return 1.0 / math.sqrt(math.log1p(mu**2 / (sample_rate**2 * steps)))


def dp_sgd_schedule(
    member_counts: Sequence[int],
    *,
    epsilon: float,
    delta: float,
    task: Task | str,
    model: ModelKind | str = ModelKind.LOGREG,
    n_features: int = 21,
) -> DpSgdSchedule:
    """The schedule of the module docstring for nodes of ``member_counts`` training members (rounded).

    Raises ``ValueError`` without a node, with a node under 2 members, or for an invalid (ε, δ).
    """
    if not member_counts or min(member_counts) < 2:
        raise ValueError(f"need at least one node of at least 2 members, got {list(member_counts)}")
    task, model = Task(task), ModelKind(model)
    mu = gdp_mu(epsilon=epsilon, delta=delta)
    tight = _plan(member_counts, mu, ROUNDS * LOCAL_STEPS, n_features)
    loose = _plan(member_counts, mu, ROUNDS * LOOSE_LOCAL_STEPS, n_features)
    # Judged at T = 40, the regime's yardstick; and only where a step samples a small share of the
    # smallest node (rule 5).
    if tight.noise_share < NOISE_SHARE_FOR_LOOSE_CLIP and loose.sample_rate <= MAX_SAMPLE_RATE_FOR_LOOSE_CLIP:
        return DpSgdSchedule(
            batch_size=loose.batch,
            learning_rate=_LOOSE_LR[model],
            max_grad_norm=LOOSE_CLIP,
            rounds=ROUNDS,
            local_steps=LOOSE_LOCAL_STEPS,
            noise_multiplier_estimate=round(loose.sigma, 4),
        )
    return DpSgdSchedule(
        batch_size=tight.batch,
        learning_rate=round(_STEP[task, model] / TIGHT_CLIP, 6),
        max_grad_norm=TIGHT_CLIP,
        rounds=ROUNDS,
        local_steps=LOCAL_STEPS,
        noise_multiplier_estimate=round(tight.sigma, 4),
    )


@dataclass(frozen=True)
class _Plan:
    batch: int
    sigma: float
    noise_share: float
    sample_rate: float  # q at the smallest node


def _plan(member_counts: Sequence[int], mu: float, steps: int, n_features: int) -> _Plan:
    """Batch at σ = 1 (within its bounds) and the noise share of the module docstring, for T steps."""
    smallest = min(member_counts)
    efficient_rate = mu / math.sqrt(steps * (math.e - 1.0))
    batch = int(min(max(MIN_BATCH, round(efficient_rate * smallest)), MAX_BATCH, smallest))
    sigma = _sigma(mu, batch / smallest, steps)
    share = sigma / (batch * math.sqrt(len(member_counts))) * math.sqrt(n_features)
    return _Plan(batch=batch, sigma=sigma, noise_share=share, sample_rate=batch / smallest)
