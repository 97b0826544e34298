"""OrthoSoftmax selection (Xu et al., "Towards Green AI in Speech Recognition: ...
OrthoSoftmax ...", ICASSP 2025).

N prunable units (layer-wise: the M modules; component-wise: FFN hidden chunks, attention
heads and conv modules) and a learned score matrix S (N x N). Row i of
P = softmax(S / tau) (row-wise) is a soft choice of "the i-th unit to keep"; the subnet for a
budget rho keeps the first k(rho) rows, with k(rho) the row count whose expected cost
fixed + sum_{i<=k} sum_j P_ij c_j is closest to rho x total. Its soft mask
m = min(1, sum_{i<=k} P_i) gates the units, so smaller budgets are prefixes of larger ones:
the subnets are nested. An orthogonality penalty on the first k rows,
R = sqrt(sum_{i<j} G_ij^2 + sum_i (G_ii - 1)^2) with G = P_k P_k^T, pushes the rows towards
distinct one-hot choices; its weight ramps from 0 to ``ortho_weight`` and tau anneals from
``temperature_start`` to ``temperature_end`` (geometric over step 1, or the authors' fixed
decay per step). Each step samples one
non-maximal budget.

Costs c_j are parameters, FLOPs (``espnet_supernet.nets.subnet_cost``) or a weighted mix of
the two as fractions of the full network's. When step 1 ends, row i keeps its most probable
unit among those rows 1..i-1 did not take (the argmax of each row, collisions resolved in
row order); each budget keeps the prefix whose exact cost is closest to it.
"""

import logging
import random
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from espnet_supernet.nets.subnet_cost import CRITERIA, cost_table
from espnet_supernet.nets.unit_gates import Gate
from espnet_supernet.selection.abs_selection import AbsSelection

GRANULARITIES = ("layer", "component")
TEMPERATURE_SCHEDULES = ("geometric", "step_decay")
# Reachable with ESPnet's conv2d front end, which alone is a third to a half of the FLOPs
# (RWTH's smallest FLOPs budget, 0.337, needs the light front end, input_layer: vgg4).
DEFAULT_BUDGETS = (0.5, 0.75, 1.0)
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
Budget = Union[float, str]


def parse_budget(budget: Budget) -> Tuple[float, bool]:
    """``0.34`` -> (0.34, fraction); ``"10M"`` / ``"1.5G"`` / ``2e6`` -> (value, absolute)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(budget))
    if match is None:
        raise ValueError(f"budget {budget!r}: give a fraction (e.g. 0.5) or an absolute "
                         "number with an optional K/M/G suffix (e.g. 10M)")
    value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"budget {budget!r} must be positive")
    return value, bool(match.group(2)) or value > 1.0


def orthogonality_penalty(rows: torch.Tensor) -> torch.Tensor:
    """R = sqrt(sum_{i<j} G_ij^2 + sum_i (G_ii - 1)^2), G = rows rows^T; rows: (k, N)."""
    gram = rows @ rows.t()
    dev = gram - torch.eye(gram.size(0), dtype=gram.dtype, device=gram.device)
    return torch.sqrt(torch.triu(dev).pow(2).sum() + 1e-12)


def rows_for_budget(probs: torch.Tensor, costs: torch.Tensor, fixed: float, target: float) -> int:
    """k in 1..N whose expected cost ``fixed + sum_{i<=k} probs_i . costs`` is closest to
    ``target`` (ties: the smaller k)."""
    expected = fixed + torch.cumsum(probs.detach() @ costs, dim=0)
    return int(torch.argmin((expected - target).abs())) + 1


def greedy_order(probs: torch.Tensor) -> List[int]:
    """Row i takes its most probable unit not taken by rows 1..i-1 (a permutation)."""
    taken: List[int] = []
    free = torch.ones(probs.size(1), dtype=torch.bool)
    for row in probs.detach().cpu():
        unit = int(torch.where(free, row, torch.tensor(-1.0)).argmax())
        taken.append(unit)
        free[unit] = False
    return taken


class OrthoSoftmaxSelection(AbsSelection):
    """OrthoSoftmax: nested subnets from the row prefixes of an orthogonal softmax.

    Args:
        masks: the named subnets (one per budget, named by the budget) from the encoder.
        budgets: ascending fractions of the full cost (e.g. ``[0.46, 0.58, 0.76, 1.0]``;
            default ``[0.5, 0.75, 1.0]``) or absolute numbers with K/M/G suffixes (``10M`` parameters,
            ``1.2G`` FLOPs per second; single criterion only). They name the subnets.
        granularity: ``layer`` (units = the 4 modules of each block) or ``component``
            (FFN chunks, heads, conv; needs ``ffn_chunks`` / ``prune_heads`` in
            ``encoder_conf``).
        criterion: ``params``, ``flops``, or weights of a mix, e.g.
            ``{params: 0.5, flops: 0.5}`` (costs as fractions of the full network's).
        flops_seconds: utterance length of the FLOPs cost model (T^2 terms).
        temperature_start, temperature_end: tau's range.
        temperature_schedule: ``"geometric"`` (tau goes from start to end over step 1,
            whatever its length) or ``"step_decay"`` (the authors':
            tau = max(start * temperature_decay ** step, end), the same decay per step
            on any corpus).
        temperature_decay: the per-step factor of ``step_decay`` (the authors' 0.999992).
        ortho_weight: final weight of the orthogonality penalty (ramped from 0).
        init_std: standard deviation of the initial scores.
        seed: seed of the scores' initialisation and of the budget sampling.
        (AbsSelection's step-1 length, subnet_weight, score_lr, score_weight_decay.)
    """

    def __init__(
        self,
        masks: Dict[str, Sequence[int]],
        budgets: Sequence[Budget] = DEFAULT_BUDGETS,
        granularity: str = "component",
        criterion: Union[str, Dict[str, float]] = "flops",
        flops_seconds: float = 10.0,
        temperature_start: float = 1.0,
        temperature_end: float = 0.01,
        temperature_schedule: str = "geometric",
        temperature_decay: float = 0.999992,
        ortho_weight: float = 1.0,
        init_std: float = 0.01,
        seed: int = 0,
        **common,
    ):
        super().__init__(masks, **common)
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        weights = {criterion: 1.0} if isinstance(criterion, str) else dict(criterion)
        bad = [c for c in weights if c not in CRITERIA]
        if bad or not weights or any(w < 0 for w in weights.values()) or not sum(weights.values()):
            raise ValueError(f"criterion must be one of {CRITERIA} or non-negative weights "
                             f"of them, got {criterion!r}")
        names = self.subnet_names_from_conf({"budgets": budgets})
        if list(masks) != names:
            raise ValueError(f"named subnets {list(masks)} differ from the budgets {names}")
        if not 0 < temperature_end <= temperature_start:
            raise ValueError("need 0 < temperature_end <= temperature_start")
        self.budgets = list(budgets)
        self.granularity = granularity
        self.criterion = {c: w / sum(weights.values()) for c, w in weights.items()}
        self.flops_seconds = flops_seconds
        if temperature_schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(f"temperature_schedule must be one of "
                             f"{', '.join(TEMPERATURE_SCHEDULES)}, got {temperature_schedule!r}")
        if not 0 < temperature_decay <= 1:
            raise ValueError(f"temperature_decay must be in (0, 1], got {temperature_decay}")
        self.temperature_start, self.temperature_end = temperature_start, temperature_end
        self.temperature_schedule, self.temperature_decay = temperature_schedule, temperature_decay
        self.ortho_weight = ortho_weight
        self.init_std = init_std
        self.seed = seed
        self.register_buffer("temperature", torch.tensor(float(temperature_start)))
        self.score_matrix: Optional[torch.nn.Parameter] = None
        self._step_cache: Optional[Tuple[int, int, torch.Tensor, float]] = None
        self._mask_cache: Optional[Tuple[int, Dict[str, List[int]]]] = None

    # ------------------------------------------------------------------ set-up
    @classmethod
    def subnet_names_from_conf(cls, conf: Dict) -> Optional[List[str]]:
        """The named subnets are the budgets, in ascending order."""
        budgets = list(conf.get("budgets", DEFAULT_BUDGETS))
        if not budgets:
            raise ValueError("ortho_softmax needs at least one budget")
        parsed = [parse_budget(b) for b in budgets]
        if len({absolute for _, absolute in parsed}) > 1:
            raise ValueError(f"budgets {budgets}: use either fractions or absolute numbers")
        values = [v for v, _ in parsed]
        if values != sorted(values) or len(set(values)) != len(values):
            raise ValueError(f"budgets {budgets} must be distinct and ascending")
        return [str(b) for b in budgets]

    def bind_encoder(self, encoder: torch.nn.Module) -> None:
        """Unit costs and the score matrix from the encoder; checks the budgets."""
        layout = encoder.layout
        if self.granularity == "component" and layout.num_units == layout.num_modules:
            raise ValueError(
                "granularity: component needs prunable components: set ffn_chunks > 1 "
                "and/or prune_heads: true in encoder_conf (or use granularity: layer)"
            )
        self.layout = layout
        tables = {c: cost_table(encoder, c, self.flops_seconds) for c in self.criterion}
        self.tables = tables
        units, fixed = None, 0.0
        for crit, w in self.criterion.items():
            table = tables[crit]
            if self.granularity == "component":
                c = table.unit_costs()
            else:
                c = [m.overhead + m.per_unit * layout.units_of(j)
                     + table.block_overhead / layout.per_block
                     for j, m in enumerate(table.modules)]
            c = torch.tensor(c, dtype=torch.float64) * (w / table.total)
            units = c if units is None else units + c
            fixed += w * table.fixed / table.total
        self.register_buffer("unit_costs", units.float(), persistent=False)
        self.fixed_cost = fixed
        # a size with a narrow front end (encoder_conf.subnet_frontend_channels) has its
        # own fixed part: the budget counts its front end at its width
        widths = getattr(encoder, "subnet_frontend_channels", {})
        self.frontend_channels = [widths.get(name) for name in self.sizes]
        self.fixed_costs = [fixed + sum(
            w * (tables[c].subnet([0] * layout.num_units, ch) - tables[c].fixed) / tables[c].total
            for c, w in self.criterion.items()) if ch is not None else fixed
            for ch in self.frontend_channels]
        self.targets = self._budget_fractions()
        n = units.numel()
        gen = torch.Generator().manual_seed(self.seed)
        self.score_matrix = torch.nn.Parameter(torch.randn(n, n, generator=gen) * self.init_std)
        logging.info(
            f"ortho_softmax: {n} {self.granularity} units, criterion {self.criterion}, "
            f"budgets {dict(zip(self.sizes, [round(t, 4) for t in self.targets]))} of the "
            f"full cost (fixed part {fixed:.3f})"
        )

    def _budget_fractions(self) -> List[float]:
        """Budgets as fractions of the full cost; rejects unreachable ones."""
        parsed = [parse_budget(b) for b in self.budgets]
        absolute = parsed[0][1]
        if absolute and len(self.criterion) > 1:
            raise ValueError("absolute budgets need a single criterion (params or flops)")
        crit = next(iter(self.criterion))
        table = self.tables[crit]
        scale = table.total if absolute else 1.0
        out = []
        for budget, (value, _), fixed in zip(self.budgets, parsed, self.fixed_costs):
            low = fixed + float(self.unit_costs.min())
            frac = value / scale
            if not low - 1e-9 <= frac <= 1.0 + 1e-9:
                reach = (f"{low:.3f} .. 1.0 of the full cost" if not absolute else
                         f"{low * table.total:.4g} .. {table.total:.4g} {crit}")
                raise ValueError(
                    f"budget {budget} is outside what the supernet can reach: {reach} "
                    f"(the unprunable part plus the cheapest unit up to the full network)"
                )
            out.append(min(frac, 1.0))
        return out

    def _require_bound(self) -> None:
        if self.score_matrix is None:
            raise RuntimeError("OrthoSoftmaxSelection.bind_encoder(encoder) was not called")

    # ------------------------------------------------------------------ step 1
    def _progress(self, step: int) -> float:
        total = max(int(self.total_steps), 1)
        return min(max(step, 0) / total, 1.0)

    def temperature_at(self, step: int) -> float:
        """tau of step-1 ``step`` under ``temperature_schedule``."""
        start, end = self.temperature_start, self.temperature_end
        if self.temperature_schedule == "step_decay":
            return max(start * self.temperature_decay ** max(step, 0), end)
        return start * (end / start) ** self._progress(step)

    def probabilities(self, temperature: Optional[float] = None) -> torch.Tensor:
        """P = softmax(S / tau) row-wise, (N, N)."""
        self._require_bound()
        tau = float(self.temperature) if temperature is None else temperature
        return torch.softmax(self.score_matrix / tau, dim=1)

    def _step(self, step: int) -> Tuple[int, torch.Tensor, float]:
        """(k, P, budget fraction) of step-1 ``step``, computed once per step."""
        if self._step_cache is None or self._step_cache[0] != step:
            self.temperature.fill_(self.temperature_at(step))
            probs = self.probabilities()
            choices = list(range(len(self.targets)))[:-1] or [0]
            i = random.Random(self.seed * 7_000_003 + step).choice(choices)
            target = self.targets[i]
            k = rows_for_budget(probs, self.unit_costs, self.fixed_costs[i], target)
            self._step_cache = (step, k, probs, target)
        _, k, probs, target = self._step_cache
        return k, probs, target

    def subnet_gates(self, step: int) -> Tuple[List[Gate], Dict[str, torch.Tensor]]:
        """Soft unit mask of a sampled non-maximal budget as module gates."""
        k, probs, target = self._step(step)
        soft = probs[:k].sum(0).clamp(max=1.0)
        gates: List[Gate] = []
        for j in range(self.layout.num_modules):
            if self.granularity == "layer":
                gates.append(soft[j])
                continue
            a, b = self.layout.module_span(j)
            gates.append(soft[a] if b - a == 1 else soft[a:b])
        stats = dict(
            temperature=torch.tensor(float(self.temperature)),
            rows=torch.tensor(float(k)),
            budget=torch.tensor(target),
        )
        return gates, stats

    def regularizer(self, step: int) -> Optional[torch.Tensor]:
        """Ramped orthogonality penalty of the step's first k rows."""
        k, probs, _ = self._step(step)
        return self.ortho_weight * self._progress(step) * orthogonality_penalty(probs[:k])

    # ------------------------------------------------------------------ masks
    def ranking(self) -> List[int]:
        """Units in the order the rows take them (most important first)."""
        return greedy_order(self.probabilities())

    def scores(self) -> Optional[torch.Tensor]:
        """Each unit's probability mass over the rows that could pick it: P's column sums."""
        return self.probabilities().sum(0)

    def masks(self) -> Dict[str, List[int]]:
        """Each budget's unit (component) or module (layer) mask: the prefix of the
        greedy order whose exact cost is closest to the budget (nested)."""
        self._require_bound()
        version = self.score_matrix._version
        if self._mask_cache is None or self._mask_cache[0] != version:
            order = self.ranking()
            prefixes = []
            mask = [0] * len(order)
            for unit in order:
                mask[unit] = 1
                prefixes.append(list(mask))
            out = {}
            costs_at: Dict[Optional[int], List[float]] = {}
            for name, target, ch in zip(self.sizes, self.targets, self.frontend_channels):
                if ch not in costs_at:
                    costs_at[ch] = [self.subnet_cost(m, ch) for m in prefixes]
                costs = costs_at[ch]
                best = min(range(len(prefixes)), key=lambda i: (abs(costs[i] - target), i))
                out[name] = prefixes[best]
            self._mask_cache = (version, out)
        return {name: list(mask) for name, mask in self._mask_cache[1].items()}

    def report_fields(self) -> Dict:
        """Granularity, criterion, budgets and each budget's achieved cost fraction."""
        masks = self.masks()
        return dict(
            granularity=self.granularity,
            criterion=self.criterion,
            temperature=round(float(self.temperature), 5),
            budgets={name: dict(target=round(t, 4), achieved=round(self.subnet_cost(m, ch), 4))
                     for (name, m), t, ch in zip(masks.items(), self.targets,
                                                 self.frontend_channels)},
            unit_order=[self.unit_names()[j] for j in self.ranking()],
        )

    def unit_names(self) -> List[str]:
        """Names of the selection's units (modules for layer granularity)."""
        names = self.layout.unit_names()
        if self.granularity == "layer":
            names = self.layout.module_names()
        return names

    def subnet_cost(self, mask: Sequence[int], frontend_channels: Optional[int] = None
                    ) -> float:
        """Exact cost of a selection mask (with the front end at ``frontend_channels``,
        None: all) as a fraction of the full network's (mixed by the criterion weights)."""
        return sum(w * self.tables[c].subnet(mask, frontend_channels) / self.tables[c].total
                   for c, w in self.criterion.items())
