"""Registers espnet_supernet's classes in ESPnet's ASR task.

Importing this module inserts the package's encoders and models into the module-level
``ClassChoices`` of ``espnet2.tasks.asr`` (ESPnet has no plugin mechanism), so that
``--encoder supernet_conformer`` / ``--model supernet`` work in ``ASRTask`` and in DDP
workers, which re-import this module. ``SupernetASRTask`` is the task the entry points use:
it adds the ``selection`` choice (how the named subnets' masks are chosen), gives learned
module scores their own optimizer group and trains with ``SupernetTrainer``.
"""

import argparse
from typing import List

import torch

from espnet_supernet.espnet_import import import_quietly

espnet_asr = import_quietly("espnet2.tasks.asr")

from espnet2.asr.encoder.abs_encoder import AbsEncoder  # noqa: E402
from espnet2.asr.espnet_model import ESPnetASRModel  # noqa: E402
from espnet2.tasks.abs_task import optim_classes, scheduler_classes  # noqa: E402
from espnet2.train.class_choices import ClassChoices  # noqa: E402

from espnet_supernet.nets.diagonal_ssm import DiagonalSSM  # noqa: E402
from espnet_supernet.nets.mhssm_encoder import MHSSMEncoder  # noqa: E402
from espnet_supernet.nets.pruned_conformer_encoder import (  # noqa: E402
    PrunedConformerEncoder,
)
from espnet_supernet.nets.supernet_conformer_encoder import (  # noqa: E402
    SupernetConformerEncoder,
)
from espnet_supernet.nets.supernet_mhssm_encoder import SupernetMHSSMEncoder  # noqa: E402
from espnet_supernet.selection.abs_selection import AbsSelection  # noqa: E402
from espnet_supernet.selection.iterative_zero_out import (  # noqa: E402
    IterativeZeroOutSelection,
)
from espnet_supernet.selection.ortho_softmax import OrthoSoftmaxSelection  # noqa: E402
from espnet_supernet.selection.simple_topk import SimpleTopKSelection  # noqa: E402
from espnet_supernet.selection.static import StaticSelection  # noqa: E402
from espnet_supernet.sparsity.omni_sparsity import OmniSparsity  # noqa: E402
from espnet_supernet.train.eden import Eden  # noqa: E402
from espnet_supernet.train.scaled_adam import ScaledAdam  # noqa: E402
from espnet_supernet.train.supernet_asr_model import SupernetASRModel  # noqa: E402
from espnet_supernet.train.supernet_transducer_model import (  # noqa: E402
    SupernetTransducerModel,
)
from espnet_supernet.train.supernet_trainer import SupernetTrainer  # noqa: E402

ENCODERS = {"supernet_conformer": SupernetConformerEncoder,
            "pruned_conformer": PrunedConformerEncoder, "mhssm": MHSSMEncoder,
            "supernet_mhssm": SupernetMHSSMEncoder}
MODELS = {"supernet": SupernetASRModel, "supernet_transducer": SupernetTransducerModel}


def _register(choices, classes, base) -> None:
    for name, cls in classes.items():
        if not issubclass(cls, base):
            raise TypeError(f"{cls.__name__} must subclass {base.__name__}")
        choices.classes[name] = cls


_register(espnet_asr.encoder_choices, ENCODERS, AbsEncoder)
_register(espnet_asr.model_choices, MODELS, ESPnetASRModel)
optim_classes["scaledadam"] = ScaledAdam  # ESPnet's --optim / --scheduler names
scheduler_classes["eden"] = Eden


selection_choices = ClassChoices(
    name="selection",
    classes=dict(
        static=StaticSelection,
        simple_topk=SimpleTopKSelection,
        iterative_zero_out=IterativeZeroOutSelection,
        ortho_softmax=OrthoSoftmaxSelection,
    ),
    type_check=AbsSelection,
    default="static",
)


sparsity_choices = ClassChoices(
    name="sparsity",
    classes=dict(omni=OmniSparsity),
    type_check=OmniSparsity,
    default=None,
    optional=True,
)


def _base_lr(args: argparse.Namespace) -> float:
    """The configured learning rate (``optim_conf.lr``, else the optimizer's default)."""
    import inspect

    if "lr" in (args.optim_conf or {}):
        return float(args.optim_conf["lr"])
    return float(inspect.signature(optim_classes[args.optim]).parameters["lr"].default)


class SupernetASRTask(espnet_asr.ASRTask):
    """ESPnet's ASR task with the supernet classes and the ``--selection`` and
    ``--sparsity`` choices."""

    class_choices_list = espnet_asr.ASRTask.class_choices_list + [selection_choices,
                                                                  sparsity_choices]
    trainer = SupernetTrainer

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetASRModel:
        """ESPnet's model, plus the selection method for a ``supernet`` model and the
        sparsity levels (``sparsity: omni``) for either supernet model.

        A method that defines the named subnets itself (OrthoSoftmax's budgets) gets them
        into ``encoder_conf`` (``subnet_names``) before the encoder is built.
        """
        name = getattr(args, "selection", None) or "static"
        selection_class = selection_choices.get_class(name)
        conf = getattr(args, "selection_conf", None) or {}
        names = selection_class.subnet_names_from_conf(conf)
        if names is not None:
            args.encoder_conf = cls._with_subnet_names(dict(args.encoder_conf or {}), names,
                                                       name)
        model = super().build_model(args)
        if isinstance(model, SupernetASRModel):
            encoder = model.encoder
            unit_level = names is not None and conf.get("granularity", "component") != "layer"
            masks = {n: (encoder.subnet_mask(n) if unit_level
                         else encoder.layout.modules_of(encoder.subnet_mask(n)))
                     for n in model.subnet_names}
            selection = selection_class(masks, **conf)
            selection.bind_encoder(encoder)
            model.set_selection(selection, output_dir=getattr(args, "output_dir", None))
        elif name != "static":
            raise ValueError(f"selection: {name} needs model: supernet")
        sparsity = getattr(args, "sparsity", None)
        if sparsity is not None:
            if not hasattr(model, "set_sparsity"):
                raise ValueError(f"sparsity: {sparsity} needs model: supernet or "
                                 f"supernet_transducer, got {type(model).__name__}")
            model.set_sparsity(sparsity_choices.get_class(sparsity)(
                **(getattr(args, "sparsity_conf", None) or {})))
        return model

    @staticmethod
    def _with_subnet_names(encoder_conf: dict, names: List[str], selection: str) -> dict:
        """``encoder_conf`` whose named subnets are ``names`` (idempotent; empty
        ``subnet_sizes`` / ``subnet_masks``, e.g. ``--encoder_conf subnet_sizes=``, are
        dropped)."""
        for key in ("subnet_sizes", "subnet_masks"):
            if key in encoder_conf and not encoder_conf[key]:
                del encoder_conf[key]
        given = [k for k in ("subnet_sizes", "subnet_masks") if encoder_conf.get(k)]
        if given:
            raise ValueError(
                f"selection: {selection} names the subnets after its budgets {names}; "
                f"remove {' and '.join(given)} from encoder_conf"
            )
        current = encoder_conf.get("subnet_names")
        if current is not None and [str(n) for n in current] != names:
            raise ValueError(f"encoder_conf subnet_names {current} differ from the "
                             f"selection's budgets {names}")
        encoder_conf["subnet_names"] = names
        return encoder_conf

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """ESPnet's ASR arguments plus the supernet's optimizer options."""
        super().add_task_arguments(parser)
        group = parser.add_argument_group("Supernet task related")
        group.add_argument(
            "--ssm_lr_scale", type=float, default=1.0,
            help="learning-rate factor, without weight decay, for the state-space dynamics "
                 "(log step size, log -Re A, Im A) of MH-SSM encoders, which S4-style layers "
                 "usually train slower than the rest (e.g. 0.1); 1.0: no special group")

    @classmethod
    def build_optimizers(
        cls, args: argparse.Namespace, model: torch.nn.Module
    ) -> List[torch.optim.Optimizer]:
        """One optimizer; learned module scores (``score_group: own``) and SSM dynamics
        get their own lr / weight-decay groups."""
        groups = []
        selection = getattr(model, "selection", None)
        own = selection is not None and selection.score_group == "own"
        scores = list(selection.parameters()) if own else []
        if scores:
            group = {"params": scores, "weight_decay": selection.score_weight_decay}
            if selection.score_lr is not None:
                group["lr"] = selection.score_lr
            groups.append(group)
        ssm_scale = getattr(args, "ssm_lr_scale", 1.0)
        dynamics = [p for m in model.modules() if isinstance(m, DiagonalSSM)
                    for p in (m.log_dt, m.log_a_real, m.a_imag)]
        if dynamics and ssm_scale != 1.0:
            groups.append({"params": dynamics, "weight_decay": 0.0,
                           "lr": _base_lr(args) * ssm_scale})
        if not groups:
            return super().build_optimizers(args, model)
        if args.sharded_ddp or args.exclude_weight_decay:
            raise ValueError("learned selection and ssm_lr_scale support neither "
                             "sharded_ddp nor exclude_weight_decay")
        optim_class = optim_classes.get(args.optim)
        if optim_class is None:
            raise ValueError(f"must be one of {list(optim_classes)}: {args.optim}")
        special = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in model.parameters() if id(p) not in special]
        if optim_class is ScaledAdam:  # ScaledAdam has no weight decay
            groups = [{k: v for k, v in g.items() if k != "weight_decay"} for g in groups]
        return [optim_class([{"params": rest}, *groups], **args.optim_conf)]
