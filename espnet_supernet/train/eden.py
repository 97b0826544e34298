"""Eden learning-rate schedule (Yao et al., "Zipformer", ICLR 2024; icefall), for ScaledAdam.

    lr = base_lr * ((b^2 + B^2) / B^2)^-0.25 * ((e^2 + E^2) / E^2)^-0.25 * warmup(b)

with b the batch (update) count, e the number of finished epochs, B = ``lr_batches``,
E = ``lr_epochs``; ``warmup(b)`` rises linearly from ``warmup_start`` to 1 over
``warmup_batches`` updates. ESPnet steps batch schedulers once per update; the epoch
count comes from ``set_epoch``, which ``SupernetTrainer`` calls at each epoch start (with
another trainer only the batch factor applies).
"""

import torch
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler


class Eden(torch.optim.lr_scheduler._LRScheduler, AbsBatchStepScheduler):
    """Eden schedule on every parameter group's base lr.

    Args:
        optimizer: the optimizer (its groups' ``lr`` are the base rates).
        lr_batches: B, updates over which the batch factor falls to 2^-0.25.
        lr_epochs: E, epochs over which the epoch factor falls to 2^-0.25.
        warmup_batches: updates of the linear warm-up (0: none).
        warmup_start: warm-up factor at update 0.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr_batches: float = 7500.0,
                 lr_epochs: float = 3.5, warmup_batches: float = 500.0,
                 warmup_start: float = 0.5, last_epoch: int = -1):
        if lr_batches <= 0 or lr_epochs <= 0:
            raise ValueError("lr_batches and lr_epochs must be positive")
        self.lr_batches, self.lr_epochs = lr_batches, lr_epochs
        self.warmup_batches, self.warmup_start = warmup_batches, warmup_start
        self.epoch = 0
        super().__init__(optimizer, last_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Number of finished epochs (e); takes effect at the next ``step``."""
        self.epoch = epoch

    def factor(self, batch: int, epoch: int) -> float:
        """The multiplier of the base lr after ``batch`` updates and ``epoch`` epochs."""
        b, e = float(batch), float(epoch)
        f = ((b ** 2 + self.lr_batches ** 2) / self.lr_batches ** 2) ** -0.25 * \
            ((e ** 2 + self.lr_epochs ** 2) / self.lr_epochs ** 2) ** -0.25
        if batch < self.warmup_batches:
            f *= self.warmup_start + (1.0 - self.warmup_start) * b / self.warmup_batches
        return f

    def get_lr(self):
        """Base rates times the Eden factor at the current update count."""
        f = self.factor(self.last_epoch, self.epoch)
        return [base * f for base in self.base_lrs]

    def __repr__(self) -> str:
        return (f"Eden(lr_batches={self.lr_batches}, lr_epochs={self.lr_epochs}, "
                f"warmup_batches={self.warmup_batches})")
