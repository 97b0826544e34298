"""ESPnet's Trainer, telling a supernet model where each training epoch starts, and
logging where the ranks of a distributed run are."""

import logging
import os
import socket
from typing import Dict, List, Tuple

import torch
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


def rank_placement(use_gpu: bool) -> List[Tuple[str, str]]:
    """(host, device) of every rank, in rank order (a collective: every rank calls it)."""
    device = f"cuda:{torch.cuda.current_device()}" if use_gpu else "cpu"
    mine = (socket.gethostname().split(".")[0], device)
    placement: List[Tuple[str, str]] = [mine] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(placement, mine)
    return [tuple(p) for p in placement]


def describe_placement(placement: List[Tuple[str, str]]) -> str:
    """``"4 ranks on 2 hosts: nodeA ranks 0-1 (cuda:0, cuda:1); nodeB ..."``."""
    hosts: Dict[str, List[int]] = {}
    for rank, (host, _) in enumerate(placement):
        hosts.setdefault(host, []).append(rank)
    parts = []
    for host, ranks in hosts.items():
        span = f"{ranks[0]}-{ranks[-1]}" if ranks == list(range(ranks[0], ranks[-1] + 1)) \
            and len(ranks) > 1 else ",".join(map(str, ranks))
        devices = ", ".join(placement[r][1] for r in ranks)
        parts.append(f"{host} rank{'s' if len(ranks) > 1 else ''} {span} ({devices})")
    return (f"{len(placement)} ranks on {len(hosts)} host{'s' if len(hosts) > 1 else ''}: "
            + "; ".join(parts))


def log_placement(distributed_option) -> None:
    """Rank 0 logs every rank's host and device (ESPnet silences the other ranks), and
    warns when a Slurm allocation of N nodes trains on fewer hosts."""
    placement = rank_placement(distributed_option.ngpu > 0 and torch.cuda.is_available())
    if torch.distributed.get_rank() != 0:
        return
    logging.info("DDP: %s", describe_placement(placement))
    nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES")
    used = len({host for host, _ in placement})
    if nodes and nodes.isdigit() and used < int(nodes):
        logging.warning(
            "DDP: the Slurm job has %s nodes but its ranks run on %d host(s): check "
            "--num_nodes and cmd.sh's train_cmd (one task per node, no nested srun)",
            nodes, used)


class SupernetTrainer(Trainer):
    """Calls ``model.start_epoch(epoch, max_epoch, steps_per_epoch)`` before each epoch,
    and ``set_epoch(finished epochs)`` of schedulers that have it (Eden). A distributed
    run first logs which host and device each rank uses (check that a multi-node run
    really uses every node).

    A selection method's step 1 is configured in epochs; this is how the model learns
    how many steps that is (the step count is saved with the model, so resuming works).
    """

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        """ESPnet's ``Trainer.run``, after logging the ranks' hosts when distributed."""
        if distributed_option.distributed and torch.distributed.is_initialized():
            log_placement(distributed_option)
        super().run(
            model=model, optimizers=optimizers, schedulers=schedulers,
            train_iter_factory=train_iter_factory, valid_iter_factory=valid_iter_factory,
            plot_attention_iter_factory=plot_attention_iter_factory,
            trainer_options=trainer_options, distributed_option=distributed_option,
        )

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

