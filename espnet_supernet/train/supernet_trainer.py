"""ESPnet's Trainer, telling a supernet model where each training epoch starts, logging
where the ranks of a distributed run are, and writing checkpoints atomically so that a run
killed at any moment resumes with ``--resume true`` (the recipe's stage 11 re-run)."""

import contextlib
import logging
import os
import re
import secrets
import socket
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, List, Sequence, Tuple, Union

import torch
from espnet2.train.reporter import Reporter
from espnet2.train.trainer import Trainer

# ".<target name>.<16 hex digits>.tmp": what atomic_write writes before the rename.
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")


@contextlib.contextmanager
def atomic_write(path: Union[str, os.PathLike]) -> Iterator[BinaryIO]:
    """Yields a binary file that replaces ``path`` only once it is completely written.

    The data goes to a temporary file in the same directory, is flushed and fsynced, and
    is renamed over ``path`` (``os.replace``, atomic on POSIX); the directory is fsynced
    too. If the block raises (or the process dies), ``path`` keeps its previous content
    and the temporary file is removed (after a kill, by :func:`remove_stale_temp_files`).
    A symbolic link is written through (its target is replaced), as ``open`` would.
    """
    path = Path(os.path.realpath(path))
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode as open() gives
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power loss
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def atomic_torch_save() -> Iterator[None]:
    """Makes ``torch.save(obj, path)`` atomic (:func:`atomic_write`) inside the block.

    ESPnet's ``Trainer.run`` (and ``average_nbest_models``, which it calls) write
    ``checkpoint.pth``, ``<N>epoch.pth`` and the averaged models with a plain
    ``torch.save(obj, path)``: a kill during such a save leaves a truncated file and
    ``--resume`` then fails. They look ``save`` up on the ``torch`` module at call time,
    so swapping that attribute while ``run`` runs makes their saves atomic without
    copying their code. Saves to file objects are passed through unchanged.
    """
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return original(obj, f, *args, **kwargs)
        with atomic_write(f) as out:
            original(obj, out, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


def remove_stale_temp_files(output_dir: Path) -> List[Path]:
    """Deletes the temporary files of saves that a kill interrupted; returns them."""
    stale = [p for p in output_dir.glob(".*.tmp") if TEMP_NAME.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def restore_epoch_files(output_dir: Path, best_model_criterion: Sequence[Sequence[str]]
                        ) -> None:
    """Completes the files of the last finished epoch after a kill.

    ``Trainer.run`` saves ``checkpoint.pth`` first, then ``<N>epoch.pth``, then updates the
    ``latest.pth`` / ``<phase>.<key>.best.pth`` links: a kill in between leaves a checkpoint
    that resumes at epoch N + 1 without epoch N's model file (which the n-best average
    needs) or with stale links. The model in ``checkpoint.pth`` is that file's content.

    Args:
        output_dir: The training's output directory (holds ``checkpoint.pth``).
        best_model_criterion: ESPnet's ``(phase, key, "min"|"max")`` triples.
    """
    checkpoint = output_dir / "checkpoint.pth"
    try:
        states = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:
        raise RuntimeError(
            f"cannot read {checkpoint} to resume training ({e}): a run without atomic saves "
            "(older espnet_supernet, stock ESPnet) was probably killed while writing it; "
            "delete it to restart training from scratch, or copy a good checkpoint over it"
        ) from e
    reporter = Reporter()
    reporter.load_state_dict(states["reporter"])
    epoch = reporter.get_epoch()
    if epoch < 1:
        return
    model_file = output_dir / f"{epoch}epoch.pth"
    if not model_file.exists():
        logging.warning(f"{model_file} is missing (killed while saving): written from "
                        f"{checkpoint}")
        with atomic_torch_save():
            torch.save(states["model"], model_file)
    links = {"latest.pth": epoch}
    for phase, key, mode in best_model_criterion:
        if reporter.has(phase, key):
            links[f"{phase}.{key}.best.pth"] = reporter.get_best_epoch(phase, key, mode)
    for name, best in links.items():
        link, target = output_dir / name, f"{best}epoch.pth"
        if (output_dir / target).exists() and not (
            link.is_symlink() and os.readlink(link) == target
        ):
            link.unlink(missing_ok=True)
            link.symlink_to(target)


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

    Checkpoints are written atomically (:func:`atomic_torch_save`), so a run killed at
    any moment, even during a save, resumes from its last finished epoch (``--resume
    true``); the resumed run first removes the killed saves' temporary files and restores
    the last epoch's model file and links (:func:`restore_epoch_files`).
    """

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        """ESPnet's ``Trainer.run`` with atomic saves, after logging the ranks' hosts when
        distributed and (rank 0, resuming) repairing what a kill left behind."""
        if distributed_option.distributed and torch.distributed.is_initialized():
            log_placement(distributed_option)
        output_dir = Path(trainer_options.output_dir)
        if not distributed_option.distributed or distributed_option.dist_rank == 0:
            for p in remove_stale_temp_files(output_dir):
                logging.warning(f"removed {p}, left by a save that was killed")
            if trainer_options.resume and (output_dir / "checkpoint.pth").exists():
                restore_epoch_files(output_dir, trainer_options.best_model_criterion)
        with atomic_torch_save():
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

