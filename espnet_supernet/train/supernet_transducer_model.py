"""TODM's RNN-T supernet model (``model: supernet_transducer``; Shangguan et al., "TODM:
Train Once Deploy Many", ICASSP 2024).

One step trains several (depth, width) subnets of a ``supernet_mhssm`` encoder on the same
batch with ESPnet's transducer decoder and joint network: the largest subnet, the
smallest and ``num_random`` others (the sandwich rule). The features and the subsampling
front end run once. The largest subnet's joint-network distributions, detached, teach the
others in place with AlphaNet's adaptive alpha-divergence over the whole (T, U + 1)
lattice of valid frames and labels (``train/alpha_divergence.py``). Adaptive dropout: a
subnet's encoder dropout is the configured rate times its parameter fraction of the
largest subnet, so smaller subnets are regularised less. The RNN-T loss is torchaudio's.
"""

import random
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.transducer.error_calculator import ErrorCalculatorTransducer
from espnet2.asr_transducer.utils import get_transducer_task_io
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_supernet.nets.fast_tanh import FastTanh
from espnet_supernet.train.alpha_divergence import alpha_divergence
from espnet_supernet.train.pruned_rnnt_loss import (
    prune_ranges,
    simple_lattice,
    window_log_probs,
    window_transitions,
)
from espnet_supernet.train.rnnt_loss import RNNTLoss, lattice_nll
from espnet_supernet.train.sparse_subnets import SparseSubnetsMixin

Stats = Dict[str, Optional[torch.Tensor]]


class SupernetTransducerModel(SparseSubnetsMixin, ESPnetASRModel):
    """RNN-T supernet with sandwich training, in-place alpha-divergence KD and adaptive
    dropout.

    Args:
        (``ESPnetASRModel``'s arguments; ``decoder: transducer`` with a joint network.)
        max_weight, min_weight, random_weight: loss weights of the sandwich slots.
        num_random: middle subnets sampled per step.
        kd_weight: weight of the alpha-divergence to the largest subnet (0: off).
        kd_alpha_range: (alpha_min, alpha_max).
        kd_iw_clip: importance-weight clip.
        adaptive_dropout: scale the encoder's dropout rates by each subnet's parameter
            fraction of the largest subnet.
        rnnt_loss: ``scan`` or ``torchaudio`` (``train/rnnt_loss.py``), or ``pruned``
            (``train/pruned_rnnt_loss.py``: the full joint only on ``prune_range`` label
            positions per frame, chosen by a simple joint whose loss is added with weight
            ``simple_loss_scale``; two linear layers to the vocabulary are added). KD then
            compares the student's joint with the teacher's on the teacher's windows.
        prune_range: window width S of ``pruned`` (at least 2).
        simple_loss_scale: weight of the simple joint's loss with ``pruned``.
        train_only: a subnet name: train (and validate) that size alone, with its own
            dropout rates unscaled and no KD: the baseline of "each size trained alone"
            for the same updates (parameters outside the subnet get no gradient).
        sandwich_seed: seed of the middle-subnet sampling (with the step: same on DDP ranks).
    """

    def __init__(
        self,
        *args,
        joint_network: Optional[torch.nn.Module] = None,
        max_weight: float = 1.0,
        min_weight: float = 1.0,
        random_weight: float = 1.0,
        num_random: int = 1,
        kd_weight: float = 1.0,
        kd_alpha_range: Sequence[float] = (-1.0, 1.0),
        kd_iw_clip: float = 5.0,
        adaptive_dropout: bool = True,
        rnnt_loss: str = "scan",
        prune_range: int = 5,
        simple_loss_scale: float = 0.5,
        train_only: Optional[str] = None,
        sandwich_seed: int = 0,
        **kwargs,
    ):
        if joint_network is None:
            raise ValueError("model 'supernet_transducer' needs decoder: transducer (and "
                             "joint_net_conf)")
        # ESPnet's transducer set-up imports warprnnt_pytorch: build without the joint
        # network, then attach it with torchaudio's RNN-T loss.
        super().__init__(*args, joint_network=None, **kwargs)
        for attr in ("subnet_names", "set_named_subnet", "forward_frontend",
                     "forward_subnet", "subnet_params", "subnets"):
            if not hasattr(self.encoder, attr):
                raise ValueError("model 'supernet_transducer' needs encoder: supernet_mhssm; "
                                 f"{type(self.encoder).__name__} has no {attr}")
        self.decoder = self.decoder if self.decoder is not None else kwargs.get("decoder")
        if type(joint_network.joint_activation) is torch.nn.Tanh:  # same function, faster
            joint_network.joint_activation = FastTanh()
        self.joint_network = joint_network
        self.use_transducer_decoder = True
        self.pruned = rnnt_loss == "pruned"
        self.criterion_transducer = RNNTLoss(self.blank_id, "scan" if self.pruned else rnnt_loss)
        if self.pruned:
            if prune_range < 2:
                raise ValueError(f"prune_range must be >= 2, got {prune_range}")
            vocab = joint_network.lin_out.out_features
            self.simple_am_proj = torch.nn.Linear(joint_network.lin_enc.in_features, vocab)
            self.simple_lm_proj = torch.nn.Linear(joint_network.lin_dec.in_features, vocab)
        self.prune_range, self.simple_loss_scale = prune_range, simple_loss_scale
        self.error_calculator_trans = ErrorCalculatorTransducer(
            self.decoder, joint_network, self.token_list, "<space>", "<blank>",
            report_cer=True, report_wer=True)
        self.error_calculator = None
        self.subnet_names: List[str] = list(self.encoder.subnet_names)
        self.weights = (max_weight, min_weight, random_weight)
        self.num_random = num_random
        self.kd_weight, self.kd_alpha_range = kd_weight, tuple(kd_alpha_range)
        self.kd_iw_clip = kd_iw_clip
        self.sandwich_seed = sandwich_seed
        if train_only is not None and str(train_only) not in self.subnet_names:
            raise ValueError(f"train_only: unknown subnet {train_only!r}; valid names: "
                             f"{', '.join(self.subnet_names)}")
        self.train_only = None if train_only is None else str(train_only)
        self.register_buffer("sandwich_step", torch.zeros((), dtype=torch.long))
        full = self.encoder.subnet_params(self.encoder.subnets[self.subnet_names[-1]])
        self.dropout_scale = {
            n: (self.encoder.subnet_params(self.encoder.subnets[n]) / full
                if adaptive_dropout and self.train_only is None else 1.0)
            for n in self.subnet_names}
        self._base_dropout = {m: m.p for m in self.encoder.modules()
                              if isinstance(m, torch.nn.Dropout)}
        self.sparsity = None
        self.active_subnet = self.train_only or self.subnet_names[-1]
        self.set_subnet(self.active_subnet)

    def set_subnet(self, name: Optional[str]) -> None:
        """Activate a named subnet (None: the largest), with its dropout rates."""
        name = self.subnet_names[-1] if name is None else str(name)
        if self.sparsity is not None:  # every level on the largest size, its dropout
            if name not in self.subnet_names:
                raise ValueError(f"unknown subnet {name!r}; valid names: "
                                 f"{', '.join(self.subnet_names)}")
            self._activate_level(name)
        else:
            self.encoder.set_named_subnet(name)  # raises on unknown names, listing them
            for module, p in self._base_dropout.items():
                module.p = p * self.dropout_scale[name]
        self.active_subnet = name

    def set_sparsity(self, sparsity) -> None:
        """Omni-sparsity levels as the named subnets (see ``SparseSubnetsMixin``)."""
        if self.train_only is not None:
            raise ValueError("train_only selects a depth/width size; with sparsity give "
                             "one level in sparsity_conf.levels instead")
        for module, p in self._base_dropout.items():
            module.p = p
        super().set_sparsity(sparsity)

    def start_epoch(self, epoch: int, max_epoch: int, steps_per_epoch: int) -> None:
        """Called by the trainer before each epoch: the sparsity warm-up's length."""
        if self.sparsity is not None:
            self.sparsity.plan_steps(steps_per_epoch, max_epoch)

    def plan(self, step: int) -> List[Tuple[str, str, float]]:
        """(stat slot, subnet, weight) of this step: largest first (the teacher)."""
        if self.train_only is not None:
            return [("max", self.train_only, 1.0)]
        names = self.subnet_names
        entries = [("max", names[-1], self.weights[0])]
        if len(names) > 1:
            entries.append(("min", names[0], self.weights[1]))
        middle = names[1:-1]
        rng = random.Random(self.sandwich_seed * 1_000_003 + step)
        for i, name in enumerate(rng.sample(middle, min(self.num_random, len(middle)))):
            entries.append((f"rand{i}", name, self.weights[2]))
        return entries

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                text_lengths: torch.Tensor, **kwargs) -> Tuple[torch.Tensor, Stats, torch.Tensor]:
        """Sandwich RNN-T loss (training) or every size's loss and CER (validation)."""
        batch_size = speech.shape[0]
        if self.training:
            if self.sparsity is not None:
                self.sparsity.before_step(int(self.sandwich_step))
            step = int(self.sandwich_step)
            plan = self.plan(step)
            self.sandwich_step += 1
        else:
            plan = [(n, n, 1.0) for n in ([self.train_only] if self.train_only
                                          else self.subnet_names)]
        previous, stats, total, teacher = self.active_subnet, {}, 0.0, None
        front, dec_out, dec_proj, target, u_len = self._shared_inputs(
            speech, speech_lengths, text, text_lengths)
        for slot, name, weight in plan:
            self.set_subnet(name)
            if self.training:
                self.mix_levels(slot, step)
            with self.sparse_weights():
                enc_out, enc_lens = self.encoder.forward_subnet(front)
            if self.pruned:
                loss, log_probs, start = self._pruned_loss(enc_out, enc_lens, dec_out, dec_proj,
                                                           target, u_len)
            else:  # log-probabilities once, for the RNN-T loss and the KD
                log_probs = self._joint(enc_out, dec_proj).float().log_softmax(dim=-1)
                loss = self.criterion_transducer(log_probs, target, enc_lens, u_len,
                                                 normalized=True)
                start = None
            stats[f"loss_{slot}"] = loss.detach()
            if self.training and self.kd_weight > 0:
                if teacher is None:
                    teacher = (log_probs.detach(), start)
                else:
                    if self.pruned:  # the student's joint on the teacher's windows
                        log_probs = window_log_probs(self._joint_fn, self.joint_network.lin_enc(
                            enc_out), dec_proj, teacher[1], self.prune_range)
                    kd, value = self._lattice_kd(teacher[0], log_probs, enc_lens, u_len,
                                                 teacher[1])
                    loss = loss + self.kd_weight * kd
                    stats[f"kd_{slot}"] = value
            if not self.training:
                cer, wer = self.error_calculator_trans(enc_out, target)
                stats[f"cer_transducer_{slot}"], stats[f"wer_transducer_{slot}"] = cer, wer
            total = total + weight * loss
        self.set_subnet(previous)
        stats["loss"] = total.detach()
        return force_gatherable((total, stats, batch_size), total.device)

    def _shared_inputs(self, speech: torch.Tensor, speech_lengths: torch.Tensor,
                       text: torch.Tensor, text_lengths: torch.Tensor):
        """What every subnet of a step shares: the encoder front end's output, the
        prediction-network output (B, U + 1, H) and its projection (B, U + 1, J), the
        targets and their lengths."""
        text = text[:, : text_lengths.max()]
        feats, lens = self._extract_feats(speech, speech_lengths)
        if self.specaug is not None and self.training:
            feats, lens = self.specaug(feats, lens)
        if self.normalize is not None:
            feats, lens = self.normalize(feats, lens)
        front = self.encoder.forward_frontend(feats, lens)
        decoder_in, target, _, u_len = get_transducer_task_io(
            text, lens, ignore_id=self.ignore_id, blank_id=self.blank_id)
        self.decoder.set_device(feats.device)
        # shared by every subnet: the decoder is not elastic
        # oneDNN has no bfloat16 LSTM: under CPU autocast the prediction network runs in
        # float32 (CUDA autocast runs it in half precision)
        with torch.autocast("cpu", enabled=False):
            dec_out = self.decoder(decoder_in)
        dec_proj = self.joint_network.lin_dec(dec_out)
        return front, dec_out, dec_proj, target, u_len

    @torch.no_grad()
    def active_loss(self, speech: torch.Tensor, speech_lengths: torch.Tensor,
                    text: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
        """RNN-T loss of the active subnet (sparsity configuration) on a batch, no
        gradient: the dev score of ``sparsity_search``."""
        front, dec_out, dec_proj, target, u_len = self._shared_inputs(
            speech, speech_lengths, text, text_lengths)
        with self.sparse_weights():
            enc_out, enc_lens = self.encoder.forward_subnet(front)
        if self.pruned:
            return self._pruned_loss(enc_out, enc_lens, dec_out, dec_proj, target, u_len)[0]
        return self.criterion_transducer(self._joint(enc_out, dec_proj), target, enc_lens,
                                         u_len)

    def _joint_fn(self, hidden: torch.Tensor) -> torch.Tensor:
        """The joint network after its projections: hidden (..., J) -> logits (..., V)."""
        return self.joint_network.lin_out(self.joint_network.joint_activation(hidden))

    def _pruned_loss(self, enc_out, enc_lens, dec_out, dec_proj, target, u_len):
        """(simple_loss_scale x simple + pruned loss, batch means; the window
        log-probabilities (B, T, S, V); the window starts (B, T))."""
        am, lm = self.simple_am_proj(enc_out), self.simple_lm_proj(dec_out)
        simple_blank, simple_label = simple_lattice(am, lm, target, self.blank_id)
        simple = lattice_nll(simple_blank, simple_label, enc_lens, u_len).mean()
        start = prune_ranges(simple_blank, simple_label, enc_lens, u_len, self.prune_range)
        log_probs = window_log_probs(self._joint_fn, self.joint_network.lin_enc(enc_out),
                                     dec_proj, start, self.prune_range)
        blank_lp, label_lp = window_transitions(log_probs, start, target, dec_proj.size(1),
                                                self.blank_id)
        pruned = lattice_nll(blank_lp, label_lp, enc_lens, u_len).mean()
        return self.simple_loss_scale * simple + pruned, log_probs, start

    def _joint(self, enc_out: torch.Tensor, dec_proj: torch.Tensor) -> torch.Tensor:
        """Joint network logits (B, T, U + 1, V) of enc_out (B, T, D) and the projected
        decoder output (B, U + 1, J), one utterance at a time: the (T, U + 1, J) hidden
        tensor of one utterance stays a few MB (the whole batch's, 70 MB for the demo,
        would be a fresh allocation per subnet and per step)."""
        joint = self.joint_network
        enc_proj = joint.lin_enc(enc_out)
        return torch.cat([
            joint.lin_out(joint.joint_activation(enc_proj[i:i + 1, :, None]
                                                 + dec_proj[i:i + 1, None]))
            for i in range(enc_out.size(0))])

    def _lattice_kd(self, teacher: torch.Tensor, student: torch.Tensor,
                    t_len: torch.Tensor, u_len: torch.Tensor,
                    start: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Alpha-divergence of the student's joint distributions from the teacher's,
        mean over the valid (t, u) nodes; both log-probabilities (B, T, U + 1, V), or
        (B, T, S, V) on the windows starting at ``start`` (B, T) (pruned loss)."""
        loss, value = alpha_divergence(teacher, student, *self.kd_alpha_range,
                                       iw_clip=self.kd_iw_clip, normalized=True)
        t = torch.arange(loss.size(1), device=loss.device)
        u = torch.arange(loss.size(2), device=loss.device)[None, None, :]
        if start is not None:
            u = start[..., None] + u  # the window's label positions
        valid = (t[None, :, None] < t_len[:, None, None]) & (u <= u_len[:, None, None])
        count = valid.sum().clamp(min=1)
        return (loss * valid).sum() / count, (value * valid).sum() / count
