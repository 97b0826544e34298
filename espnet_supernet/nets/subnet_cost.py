"""Parameter and FLOP counts of a supernet encoder's modules, units and subnets.

Conventions
- Parameters: the tensors a subnet uses. A module's cost is an ``overhead`` paid once when
  any of its units is kept (its pre-norm, the output bias of W2 / the attention output
  projection) plus ``per_unit`` for each kept unit (an FFN chunk: its W1 rows and bias and
  W2 columns; a head: its q/k/v rows and biases, output-projection columns and, with
  relative positions, its position-projection rows and two position biases). A block's
  final norm is paid when any module of the block is kept (a block without modules is
  skipped). The front end and the output norm are the fixed part.
- FLOPs: 2 x multiply-adds of the matmuls and convolutions (what
  ``torch.utils.flop_counter.FlopCounterMode`` counts; norms, activations, softmax and
  element-wise ops are not counted), for one utterance of ``seconds`` of audio (100
  feature frames per second, batch 1), divided by ``seconds``: FLOPs per second of audio.
  T is the number of frames after subsampling. Per frame and per module:
  FFN chunk of u hidden units ``4 d u`` (a conv1d FFN: 2 x its weights' size); a head of width d_k ``8 d d_k`` (q, k, v, out)
  plus ``4 T d_k`` for the scores and the weighted sum (the T^2 terms of the utterance,
  divided by T), plus with relative positions ``2 P d d_k / T`` (position projection)
  and ``2 P d_k`` (position scores), P = 2T - 1; conv module ``2 d (3 d + K)``. The front
  end (subsampling) is measured once with ``FlopCounterMode`` and is the fixed part.
  :func:`measured_flops_per_second` counts the real forward and validates these formulas;
  :func:`flop_counter` is ``FlopCounterMode`` that also counts the fused CPU attention
  kernel (as its two matmuls), which torch's counter skips.
- An elastic front end (``subnet_frontend_channels``): its cost at c channels is
  ``a + b c + q c^2`` (the convolutions after the first one are C x C, the output linear
  reads c F' columns), fitted exactly from three widths (:class:`FrontendCost`); a subnet's
  cost then replaces the full front end's share of the fixed part with its width's.
"""

from typing import List, NamedTuple, Optional, Sequence

import torch
from espnet.nets.pytorch_backend.transformer.attention import RelPositionMultiHeadedAttention
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from espnet_supernet.nets.conformer_blocks import frontend_forward
from espnet_supernet.nets.elastic_subsampling import (
    ELASTIC_SUBSAMPLING,
    sliced_parameters,
    subsampling_channels,
)
from espnet_supernet.nets.subnet_space import MODULE_ATTRS, UnitLayout

CRITERIA = ("params", "flops")


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts ``scaled_dot_product_attention`` on CPU
    (``aten._scaled_dot_product_flash_attention_for_cpu``, 0 FLOPs in torch's table)."""
    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops})


class ModuleCost(NamedTuple):
    """Cost of one prunable module: paid once if any unit is kept, plus per kept unit."""

    overhead: float
    per_unit: float


class FrontendCost(NamedTuple):
    """Cost of an elastic front end at c of its ``channels``: ``a + b c + q c^2``."""

    channels: int
    a: float
    b: float
    q: float

    def at(self, channels: Optional[int] = None) -> float:
        """The cost at ``channels`` (None: all)."""
        c = self.channels if channels is None else channels
        return self.a + self.b * c + self.q * c * c

    @classmethod
    def fit(cls, channels: int, cost_at) -> "FrontendCost":
        """The quadratic through ``cost_at(c)`` at c = C, C // 2 and C // 4 (C >= 4)."""
        widths = [channels, channels // 2, channels // 4]
        system = torch.tensor([[1.0, c, c * c] for c in widths], dtype=torch.float64)
        costs = torch.tensor([float(cost_at(c)) for c in widths], dtype=torch.float64)
        a, b, q = torch.linalg.solve(system, costs).tolist()
        return cls(channels, a, b, q)


class CostTable(NamedTuple):
    """Costs of an encoder: the fixed part (the front end at all its channels included),
    each of the M modules (module order), what a block costs once any of its modules is
    kept (its final norm) and, for an elastic front end, its cost per width."""

    fixed: float
    modules: List[ModuleCost]
    layout: UnitLayout
    block_overhead: float = 0.0
    frontend: Optional[FrontendCost] = None

    @property
    def total(self) -> float:
        """Cost of the full network."""
        return self.fixed + self.block_overhead * self.layout.num_blocks + sum(
            m.overhead + m.per_unit * self._units(j) for j, m in enumerate(self.modules)
        )

    def _units(self, module: int) -> int:
        return self.layout.units_of(module)

    def subnet(self, mask: Sequence[int], frontend_channels: Optional[int] = None) -> float:
        """Exact cost of a subnet given as a module (M) or unit (N) mask, with its front end
        at ``frontend_channels`` (None: all)."""
        units = self.layout.as_units(mask)
        cost = self.fixed
        if frontend_channels is not None:
            if self.frontend is None:
                raise ValueError("this encoder's front end is not elastic (input_layer "
                                 "conv2d, conv2d2, conv2d6 or conv2d8 is)")
            cost += self.frontend.at(frontend_channels) - self.frontend.at()
        blocks = set()
        for j, module in enumerate(self.modules):
            a, b = self.layout.module_span(j)
            kept = sum(units[a:b])
            if kept:
                cost += module.overhead + module.per_unit * kept
                blocks.add(j // self.layout.per_block)
        return cost + self.block_overhead * len(blocks)

    def unit_costs(self) -> List[float]:
        """Cost of each of the N units, a module's overhead (and a block's, over its
        units) spread evenly."""
        per_block = sum(self.layout.per_module)
        out: List[float] = []
        for j, module in enumerate(self.modules):
            n = self._units(j)
            out += [module.per_unit + module.overhead / n + self.block_overhead / per_block] * n
        return out


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _head_params(att: torch.nn.Module) -> int:
    d, d_k = att.linear_q.in_features, att.d_k
    n = 3 * (d_k * d + d_k) + d * d_k  # q, k, v rows + biases; output columns
    if isinstance(att, RelPositionMultiHeadedAttention):
        n += d_k * d + 2 * d_k  # position projection rows, pos_bias_u / pos_bias_v
    return n


def params_table(encoder: torch.nn.Module) -> CostTable:
    """Parameter counts (see the module docstring)."""
    layout: UnitLayout = encoder.layout
    modules: List[ModuleCost] = []
    for layer in encoder.encoders:
        for kind, units in zip(layout.kinds, layout.per_module):
            module, norm = (getattr(layer, a) for a in MODULE_ATTRS[kind])
            total = _numel(module) + _numel(norm)
            if units == 1:
                modules.append(ModuleCost(0, total))
                continue
            if kind == "mhsa":
                per_unit = _head_params(module)
            else:
                per_unit = module.w_1.out_features // units * (2 * module.w_1.in_features + 1)
            modules.append(ModuleCost(total - units * per_unit, per_unit))
    norm_final = getattr(encoder.encoders[0], "norm_final", None)  # only with a conv module
    block = 0 if norm_final is None else _numel(norm_final)
    fixed = _numel(encoder) - block * layout.num_blocks - sum(
        m.overhead + m.per_unit * layout.units_of(j) for j, m in enumerate(modules))
    frontend = None
    if _elastic(encoder):
        embed = encoder.embed
        rest = _numel(embed) - sum(p.numel() for p in sliced_parameters(
            embed, subsampling_channels(embed)).values())
        frontend = FrontendCost.fit(subsampling_channels(embed), lambda c: rest + sum(
            p.numel() for p in sliced_parameters(embed, c).values()))
    return CostTable(fixed, modules, layout, block, frontend)


def _elastic(encoder: torch.nn.Module) -> bool:
    """Whether ``encoder``'s front end can run at fewer channels (and has at least 4)."""
    embed = getattr(encoder, "embed", None)
    return (type(embed) in ELASTIC_SUBSAMPLING and subsampling_channels(embed) >= 4
            and hasattr(encoder, "subnet_frontend_channels"))


@torch.no_grad()
def flops_table(encoder: torch.nn.Module, seconds: float = 10.0) -> CostTable:
    """FLOPs per second of audio (see the module docstring for the convention)."""
    layout: UnitLayout = encoder.layout
    frames = int(round(seconds * 100))
    was_training = encoder.training
    encoder.eval()
    counter = flop_counter()
    param = next(encoder.parameters())
    xs = torch.zeros(1, frames, encoder.input_size, dtype=param.dtype, device=param.device)
    lens = torch.tensor([frames], device=param.device)
    with counter:
        front = frontend_forward(encoder, xs, lens)
    frontend = None
    if _elastic(encoder):
        def flops_at(channels: int) -> float:
            with flop_counter() as count:
                frontend_forward(encoder, xs, lens, channels)
            return count.get_total_flops() / seconds

        frontend = FrontendCost.fit(subsampling_channels(encoder.embed), flops_at)
    encoder.train(was_training)
    T = front.xs.size(1)
    layer = encoder.encoders[0]
    att = layer.self_attn
    d, d_k, heads = att.linear_q.in_features, att.d_k, att.h
    head = 8 * T * d * d_k + 4 * T * T * d_k
    if isinstance(att, RelPositionMultiHeadedAttention):
        pos = front.pos_emb.size(1)
        head += 2 * pos * d * d_k + 2 * T * pos * d_k
    whole = {"mhsa": head * heads}
    if layer.conv_module is not None:
        kernel = layer.conv_module.depthwise_conv.kernel_size[0]
        whole["conv"] = 2 * T * d * (3 * d + kernel)
    for kind in ("ffn_macaron", "ffn"):
        ff = getattr(layer, MODULE_ATTRS[kind][0])
        if ff is not None:  # linear or conv1d (same-length, "same" padding): 2 x weights
            whole[kind] = 2 * T * (ff.w_1.weight.numel() + ff.w_2.weight.numel())
    modules = [ModuleCost(0, whole[kind] / units / seconds)
               for _ in range(layout.num_blocks)
               for kind, units in zip(layout.kinds, layout.per_module)]
    return CostTable(counter.get_total_flops() / seconds, modules, layout, 0.0, frontend)


def cost_table(encoder: torch.nn.Module, criterion: str, seconds: float = 10.0) -> CostTable:
    """``params_table`` or ``flops_table`` by name."""
    if criterion == "params":
        return params_table(encoder)
    if criterion == "flops":
        return flops_table(encoder, seconds)
    raise ValueError(f"unknown cost criterion {criterion!r}; choose one of {CRITERIA}")


def subnet_params(encoder: torch.nn.Module, mask: Sequence[int],
                  frontend_channels: Optional[int] = None) -> int:
    """Encoder parameters used by the subnet ``mask`` (module or unit mask) with its front
    end at ``frontend_channels`` (None: all)."""
    return int(params_table(encoder).subnet(mask, frontend_channels))


def subnet_flops_per_second(
    encoder: torch.nn.Module, mask: Sequence[int], seconds: float = 10.0,
    frontend_channels: Optional[int] = None,
) -> float:
    """Encoder FLOPs per second of audio of the subnet ``mask`` (the cost model)."""
    return flops_table(encoder, seconds).subnet(mask, frontend_channels)


@torch.no_grad()
def measured_flops_per_second(
    encoder: torch.nn.Module, mask: Sequence[int], seconds: float = 10.0,
    frontend_channels: Optional[int] = None,
) -> float:
    """FLOPs per second of audio counted by ``FlopCounterMode`` on the real forward (the
    front end at ``frontend_channels``, None: all)."""
    was_training = encoder.training
    encoder.eval()
    param = next(encoder.parameters())
    frames = int(round(seconds * 100))
    xs = torch.randn(1, frames, encoder.input_size, dtype=param.dtype, device=param.device)
    lens = torch.tensor([frames], device=param.device)
    counter = flop_counter()
    elastic = hasattr(encoder, "set_frontend_channels")
    if elastic:
        active = encoder.active_frontend_channels
        encoder.set_frontend_channels(frontend_channels)
    with counter:
        encoder.forward_subnet(encoder.forward_frontend(xs, lens),
                               gates=encoder.gates(encoder.layout.as_units(mask)))
    if elastic:
        encoder.set_frontend_channels(active)
    encoder.train(was_training)
    return counter.get_total_flops() / seconds
