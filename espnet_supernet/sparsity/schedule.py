"""Gradual sparsity warm-up (Zhu & Gupta 2018, "To prune, or not to prune").

Sparsity rises from ``initial`` to ``final`` over ``ramp_steps`` steps starting at
``begin_step`` as s_t = s_f + (s_i - s_f) (1 - (t - t_0) / n)^3: fast at first, while the
network still has redundant weights, slowly near the target.
"""


def cubic_sparsity(step: int, final: float, begin_step: int = 0, ramp_steps: int = 0,
                   initial: float = 0.0) -> float:
    """Sparsity at training step ``step`` (``initial`` before ``begin_step``, ``final``
    from ``begin_step + ramp_steps`` on; ``ramp_steps`` 0: ``final`` from ``begin_step``)."""
    if step < begin_step:
        return initial
    if ramp_steps <= 0 or step >= begin_step + ramp_steps:
        return final
    remaining = 1.0 - (step - begin_step) / ramp_steps
    return final + (initial - final) * remaining ** 3
