"""One loaded supernet, any size at run time, and early-exit CTC decoding.

A supernet model in memory can switch its size between utterances (``set_subnet``: the
masks, the size's BatchNorm statistics and CTC head). :class:`EarlyExitDecoder` uses that
per utterance: it decodes with the smallest size first (CTC best path) and goes on to the
next larger size only when the size's confidence, the mean over frames of the largest CTC
posterior, is below ``threshold``. A larger size starts from the hidden state the smaller
one already computed after the blocks they share (:func:`shared_prefix`): blocks whose
modules, unit slices and BatchNorm statistics are the same in both sizes. Static sizes
spread their blocks over the depth ("layers" rule), so a smaller size is rarely a prefix
of a larger one; with ``bn_stats: per_size`` a block with a conv module computes
differently in each size. In those cases nothing but skipped blocks is shared, and the
escalation costs the larger size in full: :attr:`EarlyExitResult.flops_per_second` counts
what ran. Sizes with different front-end widths (``subnet_frontend_channels``) share no
block: the larger size runs its own front end too.
"""

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from espnet_supernet.decode.ctc_greedy_search import best_path
from espnet_supernet.nets.conformer_blocks import gated_block_forward
from espnet_supernet.nets.subnet_cost import flops_table
from espnet_supernet.nets.switchable_batch_norm import SwitchableBatchNorm1d
from espnet_supernet.nets.unit_gates import Gate, UnitSlice, is_skipped


class EarlyExitResult(NamedTuple):
    """The decoding of one utterance.

    Attributes:
        tokens: token ids of the CTC best path of the size that answered.
        size: that size's name.
        confidences: per size tried, its confidence (mean max CTC posterior).
        flops_per_second: encoder FLOPs per second of audio that ran (cost model), the
            front end once and every block each size ran (reused blocks not again).
    """

    tokens: List[int]
    size: str
    confidences: Dict[str, float]
    flops_per_second: float


def _same_gate(a: Gate, b: Gate) -> bool:
    if is_skipped(a) or is_skipped(b):
        return is_skipped(a) and is_skipped(b)
    if isinstance(a, UnitSlice) or isinstance(b, UnitSlice):
        return (isinstance(a, UnitSlice) and isinstance(b, UnitSlice)
                and torch.equal(a.rows, b.rows) and torch.equal(a.units, b.units))
    return a == b


def shared_prefix(model: torch.nn.Module, small: str, large: str) -> int:
    """How many leading blocks compute the same in the named sizes ``small`` and
    ``large`` (the same gates and, where a conv module runs, the same BatchNorm
    statistics): ``large`` can start from ``small``'s hidden state after them."""
    encoder = model.encoder
    if encoder.frontend_channels_of(small) != encoder.frontend_channels_of(large):
        return 0  # another front end: another input to every block
    gates = {n: encoder.block_gates(encoder.gates(encoder.subnet_mask(n)))
             for n in (small, large)}
    slots = {n: model.subnet_names.index(n) for n in (small, large)}
    for b, layer in enumerate(encoder.encoders):
        mine, theirs = gates[small][b], gates[large][b]
        if not all(_same_gate(x, y) for x, y in zip(mine, theirs)):
            return b
        if all(is_skipped(g) for g in mine):
            continue
        norm = getattr(layer.conv_module, "norm", None)  # no conv module: None
        conv_on = "conv" in encoder.layout.kinds and not is_skipped(
            mine[encoder.layout.kinds.index("conv")])
        if conv_on and isinstance(norm, SwitchableBatchNorm1d) and encoder.bn_stats == "per_size":
            a, c = norm.slot_statistics(slots[small]), norm.slot_statistics(slots[large])
            if not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])):
                return b
    return len(encoder.encoders)


class EarlyExitDecoder:
    """CTC best-path decoding that stops at the first size confident enough.

    Args:
        model: a Conformer CTC supernet (``model: supernet``), in eval mode.
        sizes: the sizes to try, in order (default: every named size, smallest first).
        threshold: confidence (mean over frames of the largest CTC posterior, 0..1) a
            size needs to answer; the last size always answers.
        seconds: utterance length of the cost model's FLOPs per second of audio.
    """

    def __init__(self, model: torch.nn.Module, sizes: Optional[Sequence[str]] = None,
                 threshold: float = 0.9, seconds: float = 10.0):
        encoder = model.encoder
        if getattr(encoder, "interctc_use_conditioning", False):
            raise ValueError("early exit does not support interctc_use_conditioning")
        if model.ctc is None:
            raise ValueError("early exit decodes with the CTC: the model has none")
        self.sizes = [str(s) for s in (sizes or model.subnet_names)]
        for size in self.sizes:
            if size not in model.subnet_names:
                raise ValueError(f"unknown size {size!r}; the supernet has "
                                 f"{', '.join(model.subnet_names)}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.model, self.threshold = model.eval(), threshold
        self.block_gates = {n: encoder.block_gates(encoder.gates(encoder.subnet_mask(n)))
                            for n in self.sizes}
        self.prefix = {(a, b): shared_prefix(model, a, b)
                       for a, b in zip(self.sizes, self.sizes[1:])}
        table = flops_table(encoder, seconds)
        nothing = [0] * encoder.num_units
        self.front_flops = {n: table.subnet(nothing, encoder.frontend_channels_of(n))
                            for n in self.sizes}  # the front end (and output norm) per size
        self.block_flops = {n: self._block_costs(table, encoder.subnet_mask(n))
                            for n in self.sizes}

    @staticmethod
    def _block_costs(table, mask: Sequence[int]) -> List[float]:
        """FLOPs per second of audio of each block under the unit ``mask``."""
        layout = table.layout
        units = layout.as_units(mask)
        costs = [0.0] * layout.num_blocks
        for j, module in enumerate(table.modules):
            a, b = layout.module_span(j)
            kept = sum(units[a:b])
            if kept:
                costs[j // layout.per_block] += module.overhead + module.per_unit * kept
        return [c + (table.block_overhead if c else 0.0) for c in costs]

    def size_flops(self, size: str) -> float:
        """FLOPs per second of audio of ``size`` on its own (front end included)."""
        return self.front_flops[size] + sum(self.block_flops[size])

    @torch.no_grad()
    def __call__(self, speech: torch.Tensor) -> EarlyExitResult:
        """Decode one waveform ``speech`` (L,) (or features (L, F))."""
        model, encoder = self.model, self.model.encoder
        previous = model.active_subnet
        speech = speech.unsqueeze(0)
        lengths = torch.tensor([speech.size(1)])
        feats, feats_lengths = model._features(speech, lengths)
        model.set_subnet(self.sizes[0])
        front = encoder.forward_frontend(feats, feats_lengths)
        flops, confidences, widths = 0.0, {}, set()
        states: List[torch.Tensor] = []  # hidden state after each block of the last size
        try:
            for i, size in enumerate(self.sizes):
                model.set_subnet(size)
                channels = encoder.frontend_channels_of(size)
                front = encoder.frontend_at(front, channels)
                if channels not in widths:  # each front-end width runs once
                    widths.add(channels)
                    flops += self.front_flops[size]
                start = self.prefix[self.sizes[i - 1], size] if i else 0
                xs = front.xs if start == 0 else states[start - 1]
                states = states[:start]
                for b in range(start, len(encoder.encoders)):
                    xs = gated_block_forward(
                        encoder.encoders[b], xs, front.pos_emb, front.masks,
                        self.block_gates[size][b], encoder.normalize_before,
                        encoder.adaptive_ffn_dropout, encoder.layout.kinds)
                    states.append(xs)
                    flops += self.block_flops[size][b]
                out = encoder.after_norm(xs) if encoder.normalize_before else xs
                log_probs = model.ctc.log_softmax(out)[0]
                confidence = float(log_probs.max(-1).values.exp().mean())
                confidences[size] = confidence
                if confidence >= self.threshold or i == len(self.sizes) - 1:
                    tokens = best_path(log_probs, model.blank_id).tolist()
                    return EarlyExitResult(tokens, size, confidences, flops)
        finally:
            model.set_subnet(previous)
        raise AssertionError("unreachable: the last size always answers")


def decode_fixed(model: torch.nn.Module, size: str, speech: torch.Tensor) -> Tuple[List[int], float]:
    """CTC best path of one waveform (L,) with the named ``size`` (switched in place and
    back): (token ids, confidence)."""
    previous = model.active_subnet
    model.set_subnet(size)
    try:
        with torch.no_grad():
            enc, lens = model.encode(speech.unsqueeze(0), torch.tensor([speech.size(0)]))
            enc = enc[0] if isinstance(enc, tuple) else enc
            log_probs = model.ctc.log_softmax(enc)[0]
    finally:
        model.set_subnet(previous)
    confidence = float(log_probs.max(-1).values.exp().mean())
    return best_path(log_probs, model.blank_id).tolist(), confidence
