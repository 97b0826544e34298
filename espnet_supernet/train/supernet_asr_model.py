"""ESPnet ASR model that trains a supernet's subnets jointly with the sandwich rule.

Each training step computes features and the encoder front end once, then runs the largest
subnet, the smallest and ``num_random`` sampled middle sizes on them and adds their losses
with fixed weights (Dynamic Encoder Size, Xu et al. 2024: 1.0 max, 0.3 min, 0.3 random; the
sandwich rule of Yu & Huang 2019). Optionally the non-largest subnets also learn from the
largest one's detached CTC posteriors (in-place knowledge distillation).

With a learned selection method (``selection: simple_topk`` ...) training starts with the
method's step 1: each step trains the whole supernet (weight 1) and the method's scored
subnet (weight ``subnet_weight``, plus the method's regulariser); when step 1 ends the named
sizes' masks are frozen from the scores, ``selection.yaml`` and a heatmap are written to the
experiment dir, and the sandwich rule takes over (Dynamic Encoder Size, Xu et al. 2024).
"""

import copy
import logging
import random
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable
from typeguard import typechecked

from espnet_supernet.nets.unit_gates import Gate, is_skipped, scale_gate
from espnet_supernet.nets.switchable_linear import SwitchableLinear
from espnet_supernet.selection.abs_selection import AbsSelection
from espnet_supernet.selection.report import write_selection_report
from espnet_supernet.train.alpha_divergence import alpha_divergence
from espnet_supernet.train.sparse_subnets import SparseSubnetsMixin

Stats = Dict[str, Optional[torch.Tensor]]
# (stat slot, subnet name or None for explicit gates, gates or None, loss weight)
PlanEntry = Tuple[str, Optional[str], Optional[Sequence[Gate]], float]
STOCHASTIC_DEPTH_MODES = ("batch", "row")
SUBNET_WEIGHTINGS = ("fixed", "exp_loss")
KD_TEACHERS = ("inplace", "frozen")
LARGEST_SLOTS = ("max", "super")  # plan slots of the largest network (weight kept)


class SupernetASRModel(SparseSubnetsMixin, ESPnetASRModel):
    """CTC / attention ASR model over a supernet encoder.

    The encoder must provide ``subnet_names``, ``set_named_subnet``,
    ``forward_frontend`` and ``forward_subnet`` (e.g. ``supernet_conformer``).

    Args:
        (``ESPnetASRModel``'s arguments, passed through.)
        max_weight: loss weight of the largest subnet.
        min_weight: loss weight of the smallest subnet.
        random_weight: loss weight of each sampled middle subnet.
        num_random: middle subnets sampled per step (without replacement; capped by the
            number of middle sizes).
        per_size_ctc: give each named subnet its own CTC output layer.
        inplace_kd_weight: weight of the in-place distillation of the largest subnet's
            CTC posteriors (detached) into the other subnets' (0 disables).
        kd_teacher: ``"inplace"`` (the largest subnet of the same step teaches the
            others) or ``"frozen"``: a frozen copy of the encoder and CTC at the start of
            training (``kd_teacher.*`` in the model file; ``espnet_supernet.bin.supernetize``
            writes the converted model's weights there) teaches every subnet, the
            largest included, so that fine-tuning a trained model into a supernet does
            not let its full size drift. Needs ``inplace_kd_weight`` > 0 and a CTC.
        kd_divergence: ``"kl"`` (KL(p_max || q_sub)) or ``"alpha"`` (AlphaNet's adaptive
            alpha-divergence, as TODM; see ``train/alpha_divergence.py``).
        kd_alpha_range: (alpha_min, alpha_max) of ``"alpha"``.
        kd_iw_clip: clip of the importance weights of ``"alpha"``.
        sandwich_seed: seed of the middle-size sampling; with the step counter it makes
            every DDP rank sample the same subnets in the same step.
        stochastic_depth_rate: in the largest subnet's pass, each module outside the
            smallest subnet is skipped with this probability (its output scaled by
            1 / (1 - p) when kept); 0.3-0.4 in Dynamic Encoder Size's step 2.
        stochastic_depth_mode: ``"batch"`` (one draw per module per step: a dropped
            module is skipped, no compute) or ``"row"`` (one draw per module per
            utterance, as the authors' code: every kept-anywhere module runs and each
            row's output is multiplied by its 0 or 1 / (1 - p); a module dropped for every
            row is skipped).
        largest_warmup_steps: the first N updates train only the largest subnet, the
            sandwich rule starts after them (Once-for-All, Cai et al. 2020, trains the full
            network before sampling subnets). The other slots' stats are None meanwhile
            (see Stats). With a learned selection, whose step 1 trains the whole
            supernet anyway, leave it at 0.
        subnet_weighting: ``"fixed"`` (each subnet's loss weighted by ``min_weight`` /
            ``random_weight``, and step 1's by the selection's ``subnet_weight``) or
            ``"exp_loss"`` (OrthoSoftmax's authors: every subnet but the largest weighted
            by 1 - exp(-L), L its loss per encoder frame, not detached; for a CTC-only
            model L is their per-frame CTC). The largest keeps ``max_weight``.
        train_only: a subnet name: train and validate that size alone (every update
            only its loss, weight 1; no warm-up, stochastic depth or KD), the baseline of
            "each size trained alone with the same updates" on the same encoder: the
            other sizes' exclusive parameters get no gradient. Static sizes only. A
            number (``--model_conf train_only=0.55`` parses as a float) names the size of
            that text.

    The selection method (``AbsSelection``) is attached by the task (``set_selection``);
    without one the configured masks are used from the start. With ``sparsity: omni``
    the task attaches an ``OmniSparsity`` instead (``set_sparsity``) and the named
    subnets are its sparsity levels (``train/sparse_subnets.py``).

    Stats: training reports ``loss``, ``loss_max``, ``loss_min``, ``loss_rand{i}`` (and
    ``loss_kd``) by slot (in a selection's step 1: ``loss_super``, ``loss_sub`` and the
    method's own). Every step returns the same keys, in the same order on every DDP rank;
    a slot that did not train in the step (the warm-up's, or a key of an earlier phase)
    is None, as ESPnet's own models report what they did not compute: ESPnet's trainer
    drops None stats before averaging them over ranks (the same keys on every rank, as
    the plan depends on the step only), and its reporter leaves them out of the step's
    average, so the log shows no ``nan`` for them and an epoch in which a slot never
    trained does not list it. Validation reports ``loss_<size>``,
    ``cer_ctc_<size>`` (and ``acc_<size>``, ``cer_<size>``, ``wer_<size>`` with a decoder)
    for every named size (with ``train_only``: that size), ``loss`` being their mean and
    ``acc`` the largest size's.
    """

    @typechecked
    def __init__(
        self,
        *args,
        max_weight: float = 1.0,
        min_weight: float = 0.3,
        random_weight: float = 0.3,
        num_random: int = 1,
        per_size_ctc: bool = False,
        inplace_kd_weight: float = 0.0,
        kd_teacher: str = "inplace",
        kd_divergence: str = "kl",
        kd_alpha_range: Sequence[float] = (-1.0, 1.0),
        kd_iw_clip: float = 5.0,
        sandwich_seed: int = 0,
        stochastic_depth_rate: float = 0.0,
        stochastic_depth_mode: str = "batch",
        largest_warmup_steps: int = 0,
        subnet_weighting: str = "fixed",
        train_only: Optional[Union[str, int, float]] = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        for attr in ("subnet_names", "set_named_subnet", "forward_frontend",
                     "forward_subnet"):
            if not hasattr(self.encoder, attr):
                raise ValueError(
                    f"model 'supernet' needs a supernet encoder (e.g. encoder: "
                    f"supernet_conformer); {type(self.encoder).__name__} has no {attr}"
                )
        if self.use_transducer_decoder:
            raise ValueError("model 'supernet' is CTC/attention; transducer is not supported")
        if self.ctc is None and per_size_ctc:
            raise ValueError("per_size_ctc needs a CTC branch (ctc_weight > 0)")
        self.subnet_names: List[str] = list(self.encoder.subnet_names)
        self.max_weight, self.min_weight = max_weight, min_weight
        self.random_weight, self.num_random = random_weight, num_random
        self.inplace_kd_weight = inplace_kd_weight
        if kd_divergence not in ("kl", "alpha"):
            raise ValueError(f"kd_divergence must be kl or alpha, got {kd_divergence!r}")
        self.kd_divergence, self.kd_alpha_range = kd_divergence, tuple(kd_alpha_range)
        self.kd_iw_clip = kd_iw_clip
        self.sandwich_seed = sandwich_seed
        if not 0.0 <= stochastic_depth_rate < 1.0:
            raise ValueError(f"stochastic_depth_rate must be in [0, 1), got {stochastic_depth_rate}")
        self.stochastic_depth_rate = stochastic_depth_rate
        if stochastic_depth_mode not in STOCHASTIC_DEPTH_MODES:
            raise ValueError(f"stochastic_depth_mode must be one of "
                             f"{', '.join(STOCHASTIC_DEPTH_MODES)}, got {stochastic_depth_mode!r}")
        self.stochastic_depth_mode = stochastic_depth_mode
        if largest_warmup_steps < 0:
            raise ValueError(f"largest_warmup_steps must be >= 0, got {largest_warmup_steps}")
        self.largest_warmup_steps = largest_warmup_steps
        if subnet_weighting not in SUBNET_WEIGHTINGS:
            raise ValueError(f"subnet_weighting must be one of {', '.join(SUBNET_WEIGHTINGS)}, "
                             f"got {subnet_weighting!r}")
        self.subnet_weighting = subnet_weighting
        if train_only is not None and str(train_only) not in self.subnet_names:
            raise ValueError(f"train_only: unknown subnet {train_only!r}; valid names: "
                             f"{', '.join(self.subnet_names)}")
        self.train_only = None if train_only is None else str(train_only)
        self.selection: Optional[AbsSelection] = None
        self.sparsity = None
        self.selection_output_dir: Optional[str] = None
        if per_size_ctc:
            self.ctc.ctc_lo = SwitchableLinear(self.ctc.ctc_lo, len(self.subnet_names))
        if kd_teacher not in KD_TEACHERS:
            raise ValueError(f"kd_teacher must be one of {', '.join(KD_TEACHERS)}, got "
                             f"{kd_teacher!r}")
        self.kd_teacher: Optional[torch.nn.ModuleDict] = None
        if kd_teacher == "frozen":
            if inplace_kd_weight <= 0 or self.ctc is None:
                raise ValueError("kd_teacher: frozen distils the teacher's CTC posteriors: "
                                 "it needs inplace_kd_weight > 0 and ctc_weight > 0")
            self.kd_teacher = torch.nn.ModuleDict(
                dict(encoder=copy.deepcopy(self.encoder), ctc=copy.deepcopy(self.ctc)))
            self.kd_teacher.requires_grad_(False)
        self.register_buffer("sandwich_step", torch.zeros((), dtype=torch.long))
        # Training stat keys seen so far, in order: a key that a later phase no longer
        # reports (step 1 -> sandwich) is sent as None (see Stats in the docstring).
        self._train_keys: Dict[str, None] = {}
        self.active_subnet = self.subnet_names[-1]
        self.set_subnet(None)

    # ------------------------------------------------------------------ subnets
    def set_subnet(self, name: Optional[str]) -> None:
        """Activate a named subnet (None = the largest, or the ``train_only`` size) for
        ``encode`` and decoding."""
        if name is None:
            name = getattr(self, "train_only", None) or self.subnet_names[-1]
        name = str(name)
        if name not in self.subnet_names:
            raise ValueError(
                f"unknown subnet {name!r}; valid names: {', '.join(self.subnet_names)}"
            )
        if self.sparsity is not None:
            self._activate_level(name)
            self.active_subnet = name
            return
        self.encoder.set_named_subnet(name)
        if isinstance(getattr(self.ctc, "ctc_lo", None), SwitchableLinear):
            self.ctc.ctc_lo.active_slot = self.subnet_names.index(name)
        self.active_subnet = name

    def set_selection(self, selection: AbsSelection, output_dir: Optional[str] = None) -> None:
        """Attach the selection method; its report goes to ``output_dir`` (rank 0)."""
        if list(selection.sizes) != self.subnet_names:
            raise ValueError(
                f"selection sizes {list(selection.sizes)} differ from the encoder's named "
                f"subnets {self.subnet_names}"
            )
        if self.train_only is not None and selection.learned:
            raise ValueError(
                "train_only trains one fixed size: it needs selection: static (to train "
                "a learned size alone, give its mask to the static encoder)")
        self.selection = selection
        self.selection_output_dir = output_dir

    def set_sparsity(self, sparsity) -> None:
        """Omni-sparsity levels as the named subnets (see ``SparseSubnetsMixin``)."""
        if self.selection is not None and self.selection.learned:
            raise ValueError("sparsity and a learned selection cannot be combined; use "
                             "selection: static")
        if isinstance(getattr(self.ctc, "ctc_lo", None), SwitchableLinear):
            raise ValueError("sparsity levels share one CTC head: set per_size_ctc: false")
        if self.stochastic_depth_rate > 0:
            raise ValueError("sparsity does not support stochastic_depth_rate")
        if self.train_only is not None:
            raise ValueError("train_only selects a size; with sparsity give one level in "
                             "sparsity_conf.levels instead")
        self.selection = None
        super().set_sparsity(sparsity)

    def start_epoch(self, epoch: int, max_epoch: int, steps_per_epoch: int) -> None:
        """Called by the trainer before each training epoch: fixes step 1's length
        (learned selection) or the sparsity warm-up's."""
        if self.sparsity is not None:
            self.sparsity.plan_steps(steps_per_epoch, max_epoch)
        if self.selection is not None and self.selection.learned:
            total = self.selection.plan_steps(steps_per_epoch, max_epoch)
            phase = "selection (step 1)" if int(self.sandwich_step) < total else "sandwich"
            logging.info(f"epoch {epoch}: {phase}; step 1 = {total} steps, now at step "
                         f"{int(self.sandwich_step)}")

    def _selecting(self, step: int) -> bool:
        """Whether ``step`` is in the selection's step 1; freezes the masks when it ends."""
        selection = self.selection
        if selection is None or bool(selection.frozen):
            return False
        if selection.in_selection(step):
            return True
        self.freeze_selection()
        return False

    def freeze_selection(self) -> Dict[str, List[int]]:
        """Fix every named size's mask from the scores; write the report (rank 0)."""
        masks = self.selection.freeze()
        self.encoder.set_subnet_masks(masks)
        self.encoder.reset_size_statistics()
        logging.info("selection frozen: " + "; ".join(
            f"size {n}: {sum(m)} modules" for n, m in masks.items()))
        rank0 = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
        if self.selection_output_dir is not None and rank0:
            write_selection_report(self.selection_output_dir, self.selection, self.encoder)
        return masks

    def sandwich_plan(self, step: int) -> List[Tuple[str, str, float]]:
        """(stat slot, subnet name, loss weight) triples for training step ``step``."""
        names = self.subnet_names
        plan = [("max", names[-1], self.max_weight)]
        if len(names) > 1:
            plan.append(("min", names[0], self.min_weight))
        middle = names[1:-1]
        rng = random.Random(self.sandwich_seed * 1_000_003 + step)
        picks = rng.sample(middle, min(self.num_random, len(middle)))
        plan += [(f"rand{i}", name, self.random_weight) for i, name in enumerate(picks)]
        return plan

    def stochastic_depth_gates(self, step: int, batch_size: int = 1,
                               device: Optional[torch.device] = None) -> Optional[List[Gate]]:
        """Gates of the largest subnet at ``step`` with stochastic depth, or None (off).

        Modules of the smallest subnet always run; the others are dropped with
        probability p and scaled by 1 / (1 - p) when kept. ``batch`` mode: one draw per
        module (a dropped module is skipped, no compute). ``row`` mode: one draw per
        module and utterance, the gate a (B, 1, 1) tensor of 0 or 1 / (1 - p) on the
        module's output (0 when every row drops it). Seeded by the step, so every DDP
        rank drops the same modules (in row mode: the same rows of its own batch).
        """
        p = self.stochastic_depth_rate
        if p == 0.0 or len(self.subnet_names) < 2:
            return None
        encoder = self.encoder
        largest = encoder.gates(encoder.subnet_mask(self.subnet_names[-1]))
        smallest = encoder.layout.modules_of(encoder.subnet_mask(self.subnet_names[0]))
        seed = (self.sandwich_seed + 1) * 2_000_003 + step
        row = self.stochastic_depth_mode == "row"
        rng = None if row else random.Random(seed)
        generator = torch.Generator().manual_seed(seed) if row else None
        gates: List[Gate] = []
        for gate, core in zip(largest, smallest):
            if is_skipped(gate) or core:
                gates.append(gate)
            elif not row:
                gates.append(0 if rng.random() < p else scale_gate(gate, 1.0 / (1.0 - p)))
            else:
                keep = torch.rand(batch_size, 1, 1, generator=generator) >= p
                gates.append(scale_gate(gate, keep.to(device) / (1.0 - p))
                             if bool(keep.any()) else 0)
        return gates

    def training_plan(self, step: int, batch_size: int = 1,
                      device: Optional[torch.device] = None
                      ) -> Tuple[List[PlanEntry], Optional[torch.Tensor], Stats]:
        """The subnets of training step ``step`` (a batch of ``batch_size`` on ``device``),
        the extra loss term and extra stats."""
        if self._selecting(step):
            gates, stats = self.selection.subnet_gates(step)
            plan = [("super", None, None, 1.0), ("sub", None, gates, self.selection.subnet_weight)]
            return plan, self.selection.regularizer(step), stats
        if self.train_only is not None:
            return [("max", self.train_only, None, 1.0)], None, {}
        plan = [(slot, name, None, weight) for slot, name, weight in self.sandwich_plan(step)]
        stats: Stats = {}
        if step < self.largest_warmup_steps:  # the other slots do not train: None
            stats = {f"loss_{slot}": None for slot, _, _, _ in plan[1:]}
            plan = plan[:1]
        depth_gates = self.stochastic_depth_gates(step, batch_size, device)
        if depth_gates is not None:
            plan[0] = (plan[0][0], plan[0][1], depth_gates, plan[0][3])
        return plan, None, stats

    def validation_plan(self) -> List[PlanEntry]:
        """Every named size, equally weighted (in step 1 with the current top-k masks)."""
        if self.selection is not None and not bool(self.selection.frozen):
            self.encoder.set_subnet_masks(self.selection.masks())
        names = [self.train_only] if self.train_only is not None else self.subnet_names
        return [(n, n, None, 1.0 / len(names)) for n in names]

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Stats, torch.Tensor]:
        """Sandwich-rule loss over subnets (training) or every size's loss (validation).

        Args:
            speech: (B, L) waveforms or (B, L, F) features.
            speech_lengths: (B,).
            text: (B, U) token ids.
            text_lengths: (B,).
        """
        batch_size = speech.shape[0]
        text[text == -1] = self.ignore_id
        text = text[:, : text_lengths.max()]
        feats, feats_lengths = self._features(speech, speech_lengths)
        front = self.encoder.forward_frontend(feats, feats_lengths)
        previous = self.active_subnet
        stats: Stats = {}
        total, extra = 0.0, None
        if self.training:
            step = int(self.sandwich_step)
            if self.sparsity is not None:
                self.sparsity.before_step(step)
            plan, extra, stats = self.training_plan(step, batch_size, speech.device)
            self.sandwich_step += 1
        else:
            plan = self.validation_plan()
        selecting = self.selection is not None and not bool(self.selection.frozen)
        # In step 1 the named masks still move: every pass uses the shared BN statistics.
        self.encoder.use_size_statistics(not selecting)

        teacher, kd_total = None, 0.0
        distilling = (self.training and self.inplace_kd_weight > 0 and self.ctc is not None
                      and self.train_only is None)
        if distilling and self.kd_teacher is not None:
            teacher = self._frozen_teacher(feats, feats_lengths)
        for slot, name, gates, weight in plan:
            self.set_subnet(name)
            if name is None:  # step 1: every module (or the given gates); largest's head
                self.encoder.set_subnet(None)
            elif self.training:
                self.mix_levels(slot, step)
            with self.sparse_weights():
                enc_out, enc_lens, intermediate = self._encode_subnet(front, gates)
            if self.postencoder is not None:
                enc_out, enc_lens = self.postencoder(enc_out, enc_lens)
            loss, sub_stats = self._subnet_loss(enc_out, enc_lens, text, text_lengths,
                                                intermediate)
            if distilling:
                log_q = self.ctc.log_softmax(enc_out)
                if teacher is None:
                    teacher = log_q.detach()
                else:
                    kd, kd_value = self._distill(teacher, log_q, enc_lens)
                    loss = loss + self.inplace_kd_weight * kd
                    kd_total = kd_total + kd_value
            if self.training and self.subnet_weighting == "exp_loss" and slot not in LARGEST_SLOTS:
                weight = 1.0 - torch.exp(-loss * batch_size / enc_lens.sum().clamp(min=1))
                stats[f"weight_{slot}"] = weight.detach()
            total = total + weight * loss
            stats[f"loss_{slot}"] = loss.detach()
            if not self.training:
                stats.update({f"{k}_{name}": v for k, v in sub_stats.items()})
        self.set_subnet(previous)
        if extra is not None:
            total = total + extra
            stats["loss_selection"] = extra.detach()
        if self.training and selecting:
            self.selection.after_step(step)

        if not self.training:
            stats["acc"] = stats.get(f"acc_{plan[-1][1]}")
        if self.training and self.inplace_kd_weight > 0:
            students = len(plan) - (0 if self.kd_teacher is not None else 1)
            stats["loss_kd"] = kd_total / students if students > 0 else None
        stats["loss"] = total.detach()
        if self.training:
            for key in self._train_keys:
                stats.setdefault(key, None)
            self._train_keys.update(dict.fromkeys(stats))
        loss, stats, weight = force_gatherable((total, stats, batch_size), total.device)
        return loss, stats, weight

    @torch.no_grad()
    def active_loss(self, speech: torch.Tensor, speech_lengths: torch.Tensor,
                    text: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
        """CTC / attention loss of the active subnet (sparsity configuration) on a batch,
        no gradient: the dev score of ``sparsity_search``."""
        text = text.clone()
        text[text == -1] = self.ignore_id
        text = text[:, : text_lengths.max()]
        front = self.encoder.forward_frontend(*self._features(speech, speech_lengths))
        with self.sparse_weights():
            enc_out, enc_lens, intermediate = self._encode_subnet(front, None)
        if self.postencoder is not None:
            enc_out, enc_lens = self.postencoder(enc_out, enc_lens)
        return self._subnet_loss(enc_out, enc_lens, text, text_lengths, intermediate)[0]

    def _encode_subnet(self, front, gates):
        """The encoder's blocks for one subnet: output (B, T', D), lengths (B,) and the
        intermediate outputs of ESPnet's intermediate CTC (only when ``interctc_weight``
        > 0 or the encoder conditions on them)."""
        encoder = self.encoder
        if (self.interctc_weight != 0.0 or getattr(encoder, "interctc_use_conditioning", False)) \
                and hasattr(encoder, "forward_subnet_intermediate"):
            return encoder.forward_subnet_intermediate(front, gates, self.ctc)
        return (*encoder.forward_subnet(front, gates), [])

    @torch.no_grad()
    def _frozen_teacher(self, feats: torch.Tensor, feats_lengths: torch.Tensor) -> torch.Tensor:
        """CTC log-posteriors (B, T', V) of the frozen teacher (``kd_teacher: frozen``),
        its full encoder in eval mode, on the step's features."""
        encoder, ctc = self.kd_teacher["encoder"], self.kd_teacher["ctc"]
        encoder.eval()
        encoder.set_subnet(None)
        out, _ = encoder.forward_subnet(encoder.forward_frontend(feats, feats_lengths),
                                        ctc=ctc)
        return ctc.log_softmax(out)

    def _features(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend, SpecAugment (training), normalisation and pre-encoder, once."""
        feats, lens = self._extract_feats(speech, speech_lengths)
        if self.specaug is not None and self.training:
            feats, lens = self.specaug(feats, lens)
        if self.normalize is not None:
            feats, lens = self.normalize(feats, lens)
        if self.preencoder is not None:
            feats, lens = self.preencoder(feats, lens)
        return feats, lens

    def _subnet_loss(
        self,
        enc_out: torch.Tensor,
        enc_lens: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        intermediate: Sequence[Tuple[int, torch.Tensor]] = (),
    ) -> Tuple[torch.Tensor, Stats]:
        """CTC / attention loss of one subnet's encoder output (B, T', D); with
        ``interctc_weight`` > 0, ESPnet's intermediate CTC on the subnet's ``intermediate``
        outputs ``[(layer, (B, T', D))]``: the CTC loss becomes (1 - w) CTC + w x their
        mean, each reported as ``loss_interctc_layer<i>`` / ``cer_interctc_layer<i>``."""
        stats: Stats = {}
        loss_ctc = loss_att = None
        if self.ctc_weight != 0.0:
            loss_ctc, cer_ctc = self._calc_ctc_loss(enc_out, enc_lens, text, text_lengths)
            stats.update(loss_ctc=loss_ctc.detach(), cer_ctc=cer_ctc)
            if self.interctc_weight != 0.0 and intermediate:
                loss_inter = 0.0
                for layer, out in intermediate:
                    loss_i, cer_i = self._calc_ctc_loss(out, enc_lens, text, text_lengths)
                    loss_inter = loss_inter + loss_i
                    stats[f"loss_interctc_layer{layer}"] = loss_i.detach()
                    stats[f"cer_interctc_layer{layer}"] = cer_i
                loss_inter = loss_inter / len(intermediate)
                loss_ctc = (1 - self.interctc_weight) * loss_ctc + \
                    self.interctc_weight * loss_inter
        if self.ctc_weight != 1.0:
            loss_att, acc, cer, wer = self._calc_att_loss(enc_out, enc_lens, text, text_lengths)
            stats.update(loss_att=loss_att.detach(), acc=acc, cer=cer, wer=wer)
        if loss_att is None:
            loss = loss_ctc
        elif loss_ctc is None:
            loss = loss_att
        else:
            loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
        stats["loss"] = loss.detach()
        return loss, stats

    def _distill(
        self, log_p: torch.Tensor, log_q: torch.Tensor, lens: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(loss to back-propagate, detached divergence), means over valid frames of the
        teacher's log_p and the student's log_q, (B, T', V); lens: (B,)."""
        valid = torch.arange(log_q.size(1), device=log_q.device)[None, :] < lens[:, None]
        if self.kd_divergence == "alpha":
            loss, value = alpha_divergence(log_p, log_q, *self.kd_alpha_range,
                                           iw_clip=self.kd_iw_clip)
        else:
            loss = (log_p.exp() * (log_p - log_q)).sum(-1)  # KL(p || q), (B, T')
            value = loss.detach()
        count = valid.sum().clamp(min=1)
        return (loss * valid).sum() / count, (value * valid).sum() / count
