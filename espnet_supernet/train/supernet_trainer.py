"""ESPnet's Trainer, telling a supernet model where each training epoch starts."""

from espnet2.train.trainer import Trainer


def epoch_length(iterator, num_iters_per_epoch) -> int:
    """Batches in this epoch's iterator (``num_iters_per_epoch`` when it has no length)."""
    try:
        return len(iterator)
    except TypeError:
        if num_iters_per_epoch is None:
            raise RuntimeError(
                "cannot tell the epoch length of this iterator: set num_iters_per_epoch "
                "or give the selection's length as selection_steps"
            )
        return num_iters_per_epoch


class SupernetTrainer(Trainer):
    """Calls ``model.start_epoch(epoch, max_epoch, steps_per_epoch)`` before each epoch,
    and ``set_epoch(finished epochs)`` of schedulers that have it (Eden).

    A selection method's step 1 is configured in epochs; this is how the model learns
    how many steps that is (the step count is saved with the model, so resuming works).
    """

    @classmethod
    def train_one_epoch(cls, model, iterator, reporter, options, **kwargs) -> bool:
        core = getattr(model, "module", model)  # DDP / DataParallel wrap the model
        if hasattr(core, "start_epoch"):
            steps = epoch_length(iterator, getattr(options, "num_iters_per_epoch", None))
            core.start_epoch(reporter.epoch, options.max_epoch, steps)
        for scheduler in kwargs.get("schedulers") or []:
            if hasattr(scheduler, "set_epoch"):
                scheduler.set_epoch(reporter.epoch - 1)
        return super().train_one_epoch(
            model=model, iterator=iterator, reporter=reporter, options=options, **kwargs
        )
