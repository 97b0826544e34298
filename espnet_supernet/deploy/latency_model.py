"""A per-device latency predictor: profile a supernet's unit types once, then predict the
latency of any of its subnets without building or running it.

FLOPs predict CPU latency badly (a fixed front end, memory-bound depthwise convolutions,
small matmuls), and measuring every candidate subnet (``export/latency.py``) costs seconds
each. Here the latency of an exported subnet (encoder + CTC greedy on one utterance of
``seconds`` at batch 1, ``measure_latency_ms``) is modelled as

    fixed + sum over module types t of  a_t * (modules of t kept) + b_t * (units of t kept)
          + c * (blocks kept),

the per-module cost ``a_t`` covering its norm, residual and the work that does not shrink
with its units, ``b_t`` the cost of one FFN chunk or attention head, ``c`` a block's final
norm, ``fixed`` the features, the subsampling front end, the output norm and the CTC head.
An elastic front end (``subnet_frontend_channels``) adds ``f_1 w + f_2 w^2`` for the
share ``w`` of its channels kept (its first convolution and output projection shrink
with ``w``, the second convolution with ``w^2``); its widths are profiled as well.
:func:`profile_device` measures random component subnets, exported, on the machine where
it runs, for each input length and dtype (fp32, dynamic int8), and fits the coefficients
(non-negative least squares, ms). The fit is then checked on subnets it did not see, the
named sizes and other random subnets (:func:`validate`). A model is valid for the
machine, thread count and torch version it was profiled with (``machine_id``).
"""

import datetime
import json
import logging
import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from scipy.optimize import nnls

from espnet_supernet.export.latency import machine_id, measure_latency_ms
from espnet_supernet.export.quantize import quantize_int8
from espnet_supernet.export.subnet_export import export_subnet
from espnet_supernet.export.supernet_loading import build_from_config
from espnet_supernet.nets.elastic_subsampling import check_elastic, subsampling_channels
from espnet_supernet.nets.subnet_space import UnitLayout

DTYPES = ("fp32", "int8")


FRONTEND_FEATURES = ("frontend.width", "frontend.width_sq")


def exported_factory(supernet, train_config: dict, name: str,
                     mask: Optional[List[int]] = None,
                     frontend_channels: Optional[int] = None) -> Callable[[], torch.nn.Module]:
    """``() -> exported model`` of a subnet, built in memory (for latency measurements);
    ``frontend_channels`` with ``mask``: its front-end width (None: all)."""
    def build() -> torch.nn.Module:
        result = export_subnet(supernet, train_config, name, build_from_config, mask=mask,
                               frontend_channels=frontend_channels)
        model = build_from_config(result.config)
        model.load_state_dict(result.state_dict, strict=True)
        return model.eval()
    return build


def feature_names(layout: UnitLayout, frontend: bool = False) -> List[str]:
    """The predictor's inputs: ``fixed``, the front-end width terms (``frontend``:
    :data:`FRONTEND_FEATURES`), per module type ``<type>.modules`` (and ``<type>.units``
    when it has several units), ``blocks``."""
    names = ["fixed"] + (list(FRONTEND_FEATURES) if frontend else [])
    for kind, units in zip(layout.kinds, layout.per_module):
        names.append(f"{kind}.modules")
        if units > 1:
            names.append(f"{kind}.units")
    return names + ["blocks"]


def subnet_features(layout: UnitLayout, mask: Sequence[int],
                    width: Optional[float] = None) -> Dict[str, float]:
    """Counts of a subnet (module or unit mask) for :func:`feature_names`; ``width``:
    the share of front-end channels it keeps, for the front-end terms (None: none)."""
    units = layout.as_units(mask)
    counts = {name: 0.0 for name in feature_names(layout, frontend=width is not None)}
    counts["fixed"] = 1.0
    if width is not None:
        counts["frontend.width"], counts["frontend.width_sq"] = width, width * width
    blocks = set()
    for m in range(layout.num_modules):
        a, b = layout.module_span(m)
        kept = sum(units[a:b])
        if kept:
            kind = layout.kind(m)
            counts[f"{kind}.modules"] += 1
            if layout.units_of(m) > 1:
                counts[f"{kind}.units"] += kept
            blocks.add(m // layout.per_block)
    counts["blocks"] = float(len(blocks))
    return counts


def random_masks(layout: UnitLayout, count: int, seed: int) -> List[List[int]]:
    """``count`` random unit masks, each keeping a random share (15-100 %) of the units."""
    rng = random.Random(seed)
    masks = []
    for _ in range(count):
        share = rng.uniform(0.15, 1.0)
        mask = [int(rng.random() < share) for _ in range(layout.num_units)]
        if not any(mask):
            mask[rng.randrange(layout.num_units)] = 1
        masks.append(mask)
    return masks


@dataclass
class LatencyModel:
    """Fitted per-unit-type latencies (ms) of one machine, per dtype and input length.

    Attributes:
        machine: ``machine_id(threads)`` of the profiling machine.
        threads: torch threads of the measurements.
        torch_version: the torch that ran them.
        layout: the supernet's ``UnitLayout`` as a dict.
        features: :func:`feature_names`.
        coefficients: ``{dtype: {seconds (str): {feature: ms}}}``.
        profiled: the measured subnets ``[{"subnet", "mask", "latency_ms": {dtype:
            {seconds: ms}}}]``.
        validation: :func:`validate`'s rows and summary, once run.
        frontend_channels: the full front end's channels when the profile varied its
            width (:data:`FRONTEND_FEATURES`), else 0 (only the full front end).
    """

    machine: str
    threads: int
    torch_version: str
    layout: Dict[str, Any]
    features: List[str]
    coefficients: Dict[str, Dict[str, Dict[str, float]]]
    profiled: List[Dict[str, Any]] = field(default_factory=list)
    validation: Optional[Dict[str, Any]] = None
    created: str = ""
    frontend_channels: int = 0

    @property
    def unit_layout(self) -> UnitLayout:
        return UnitLayout(tuple(self.layout["per_module"]), self.layout["num_blocks"],
                          tuple(self.layout["kinds"]))

    @property
    def lengths(self) -> List[float]:
        return sorted(float(s) for s in next(iter(self.coefficients.values())))

    @property
    def frontend_widths(self) -> List[int]:
        """The narrow front-end widths the profile measured."""
        return sorted({p["frontend_channels"] for p in self.profiled
                       if p.get("frontend_channels") is not None})

    def width(self, frontend_channels: Optional[int]) -> Optional[float]:
        """The front-end feature ``w`` of ``frontend_channels`` (None: all channels);
        None for a model without front-end terms.

        Raises:
            ValueError: a narrow front end for a model profiled without one, or more
                channels than the front end has.
        """
        if not self.frontend_channels:
            if frontend_channels is not None:
                raise ValueError(
                    f"this latency model was profiled with the full front end only, not "
                    f"at {frontend_channels} channels: re-run profile_device with "
                    "--frontend_widths (default: the named sizes' widths)")
            return None
        channels = self.frontend_channels if frontend_channels is None else frontend_channels
        if not 1 <= channels <= self.frontend_channels:
            raise ValueError(f"the front end has {self.frontend_channels} channels, not "
                             f"{frontend_channels}")
        return channels / self.frontend_channels

    def predict(self, mask: Sequence[int], seconds: float = 10.0, dtype: str = "fp32",
                frontend_channels: Optional[int] = None) -> float:
        """Predicted latency (ms) of the subnet ``mask`` with its front end at
        ``frontend_channels`` (None: all) on ``seconds`` of audio; between two profiled
        lengths it is interpolated linearly.

        Raises:
            ValueError: a dtype or length that was not profiled, a mask of another
                layout, a front-end width the model cannot predict (:meth:`width`).
        """
        if dtype not in self.coefficients:
            raise ValueError(f"dtype {dtype!r} was not profiled; this model has "
                             f"{', '.join(self.coefficients)} (profile_device --dtypes)")
        lengths = self.lengths
        if not lengths[0] <= seconds <= lengths[-1]:
            raise ValueError(f"{seconds} s is outside the profiled lengths {lengths}: "
                             "re-run profile_device with --lengths covering it")
        counts = subnet_features(self.unit_layout, mask, self.width(frontend_channels))

        def at(length: float) -> float:
            coef = self.coefficients[dtype][_key(length)]
            return sum(coef[name] * counts[name] for name in self.features)

        upper = next(s for s in lengths if s >= seconds)
        if upper == seconds:
            return at(upper)
        lower = max(s for s in lengths if s < seconds)
        w = (seconds - lower) / (upper - lower)
        return (1 - w) * at(lower) + w * at(upper)

    def save(self, path: Path) -> Path:
        """Write the model as JSON (``path``'s directory is created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> "LatencyModel":
        """Read a model written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file (``profile_device`` writes it).
            ValueError: the file is not a latency model.
        """
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist: run python -m "
                                    "espnet_supernet.bin.profile_device --exp <exp> first")
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a latency model written by profile_device "
                             f"({error})") from error


def _key(seconds: float) -> str:
    return f"{float(seconds):g}"


def _measure(factory, dtypes: Sequence[str], lengths: Sequence[float], threads: int,
             repeats: int) -> Dict[str, Dict[str, float]]:
    """``{dtype: {seconds: ms}}`` of the model ``factory()`` builds."""
    model = factory()
    out: Dict[str, Dict[str, float]] = {}
    for dtype in dtypes:
        run = quantize_int8(model) if dtype == "int8" else model
        out[dtype] = {_key(s): round(measure_latency_ms(run, s, threads, repeats), 4)
                      for s in lengths}
    return out


def named_and_random(supernet, count: int, seed: int, named: bool = True,
                     frontend_widths: Sequence[int] = ()) -> List[tuple]:
    """``[(label, unit mask, front-end channels or None)]``: every named size
    (``named``), then ``count`` random subnets, each with a front end drawn from
    ``frontend_widths`` and the full one."""
    encoder = supernet.encoder
    subnets = [(n, encoder.subnet_mask(n), encoder.frontend_channels_of(n))
               for n in supernet.subnet_names] if named else []
    rng = random.Random(seed + 7919)
    choices = [None] + sorted(set(frontend_widths))
    return subnets + [(f"random{seed}_{i}", mask, rng.choice(choices))
                      for i, mask in enumerate(random_masks(encoder.layout, count, seed))]


def frontend_widths_of(supernet, widths: Optional[Sequence[int]]) -> List[int]:
    """The narrow front-end widths to profile: ``widths``, or (None) the named sizes'
    and the midpoint between each of them and the next wider one (the full front end
    included), so that the fit sees at least three widths and its two width terms are
    determined.

    Raises:
        ValueError: a width the supernet's front end cannot run at.
    """
    encoder = supernet.encoder
    named = widths is None
    if named:
        widths = list(getattr(encoder, "subnet_frontend_channels", {}).values())
    widths = sorted({int(w) for w in widths})
    for w in widths:
        check_elastic(encoder.embed, w)
    if not widths:
        return []
    full = subsampling_channels(encoder.embed)
    if named:
        edges = widths + [full]
        widths = sorted(set(widths) | {(a + b) // 2 for a, b in zip(edges, edges[1:])})
    return [w for w in widths if w != full]


def profile_device(supernet, train_config: dict, lengths: Sequence[float] = (5.0, 10.0),
                   dtypes: Sequence[str] = DTYPES, threads: int = 2, num_random: int = 24,
                   repeats: int = 5, seed: int = 0,
                   frontend_widths: Optional[Sequence[int]] = None) -> LatencyModel:
    """Measure ``num_random`` random subnets here and fit the model (the named sizes are
    left for :func:`validate`).

    Args:
        supernet: a loaded Conformer CTC supernet (``model: supernet``).
        train_config: its ``config.yaml`` contents.
        lengths: input lengths (s) to profile; predictions interpolate between them.
        dtypes: ``fp32`` and / or ``int8`` (dynamic quantization of the Linear layers).
        threads: torch threads of the measurements (the deployment's).
        num_random: random component subnets to measure (at least the number of
            coefficients, :func:`feature_names`).
        repeats: timed runs per measurement (their median is taken).
        seed: of the random subnets.
        frontend_widths: narrow front-end channel counts the random subnets draw from
            (besides the full one), which adds the front-end terms (give two or more:
            with one, the two terms are not determined and only that width is predicted
            well); None: the named sizes' (``subnet_frontend_channels``) and midpoints
            (:func:`frontend_widths_of`), () or none there: only the full one.

    Raises:
        TypeError: not a Conformer CTC supernet.
        ValueError: an unknown dtype, no length, fewer subnets than coefficients, a
            width the front end cannot run at.
    """
    unknown = sorted(set(dtypes) - set(DTYPES))
    if unknown or not dtypes:
        raise ValueError(f"dtypes must be some of {DTYPES}, got {list(dtypes)}")
    if not lengths or min(lengths) <= 0:
        raise ValueError(f"lengths must be positive seconds, got {list(lengths)}")
    layout = getattr(supernet.encoder, "layout", None)
    if layout is None or not hasattr(supernet, "ctc"):
        raise TypeError(f"{type(supernet).__name__} is not a Conformer CTC supernet: the "
                        "latency predictor models encoder + CTC greedy (model: supernet)")
    widths = frontend_widths_of(supernet, frontend_widths)
    full_channels = subsampling_channels(supernet.encoder.embed) if widths else 0
    features = feature_names(layout, frontend=bool(widths))
    subnets = named_and_random(supernet, num_random, seed, named=False,
                               frontend_widths=widths)
    if len(subnets) < len(features):
        raise ValueError(f"{len(subnets)} subnets cannot fit {len(features)} coefficients: "
                         f"raise --num_random to at least {len(features)}")
    profiled = []
    for i, (label, mask, channels) in enumerate(subnets):
        latency = _measure(exported_factory(supernet, train_config, label, mask, channels),
                           dtypes, lengths, threads, repeats)
        profiled.append(dict(subnet=label, mask=mask, frontend_channels=channels,
                             latency_ms=latency))
        logging.info("profiled %d/%d %s (front end %s): %s", i + 1, len(subnets), label,
                     channels or "full", latency)

    def width(p: Dict[str, Any]) -> Optional[float]:
        return (p["frontend_channels"] or full_channels) / full_channels if widths else None

    design = np.array([[subnet_features(layout, p["mask"], width(p))[f] for f in features]
                       for p in profiled])
    coefficients: Dict[str, Dict[str, Dict[str, float]]] = {}
    for dtype in dtypes:
        coefficients[dtype] = {}
        for length in lengths:
            target = np.array([p["latency_ms"][dtype][_key(length)] for p in profiled])
            coef, _ = nnls(design, target)
            coefficients[dtype][_key(length)] = {f: round(float(c), 5)
                                                 for f, c in zip(features, coef)}
    return LatencyModel(
        machine=machine_id(threads), threads=threads, torch_version=torch.__version__,
        layout=dict(per_module=list(layout.per_module), num_blocks=layout.num_blocks,
                    kinds=list(layout.kinds)),
        features=features, coefficients=coefficients, profiled=profiled,
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        frontend_channels=full_channels)


def validate(model: LatencyModel, supernet, train_config: dict, num_random: int = 20,
             repeats: int = 5, seed: int = 1) -> Dict[str, Any]:
    """Predicted vs measured latency of the named sizes and ``num_random`` random subnets
    (another seed than the profile's, front ends drawn from the profiled widths), per
    dtype and profiled length; a named size with a narrow front end is left out when the
    model was profiled without one.

    Returns:
        ``{"rows": [{"subnet", "dtype", "seconds", "predicted_ms", "measured_ms",
        "error"}], "summary": {dtype: {"median_abs_error", "p90_abs_error",
        "within_10pct"}}}`` (errors relative to the measurement); also stored in
        ``model.validation``.

    Raises:
        ValueError: the model was profiled on another machine or thread count.
    """
    here = machine_id(model.threads)
    if here != model.machine:
        raise ValueError(f"the latency model was profiled on {model.machine}, this is "
                         f"{here}: profile this machine (profile_device)")
    seen = {(tuple(p["mask"]), p.get("frontend_channels")) for p in model.profiled}
    rows = []
    for label, mask, channels in named_and_random(supernet, num_random, seed,
                                                  frontend_widths=model.frontend_widths):
        if channels is not None and not model.frontend_channels:
            logging.info("not validated: %s (front end at %d channels; the model has no "
                         "front-end terms)", label, channels)
            continue
        held_out = (tuple(mask), channels) not in seen
        if not held_out and label not in supernet.subnet_names:
            continue  # a random subnet the fit saw; a named size is reported anyway
        measured = _measure(exported_factory(supernet, train_config, label, mask, channels),
                            list(model.coefficients), model.lengths, model.threads, repeats)
        for dtype, by_length in measured.items():
            for length, ms in by_length.items():
                predicted = model.predict(mask, float(length), dtype, channels)
                rows.append(dict(subnet=label, dtype=dtype, seconds=float(length),
                                 frontend_channels=channels,
                                 predicted_ms=round(predicted, 3), measured_ms=ms,
                                 error=round((predicted - ms) / ms, 4), held_out=held_out))
    summary = {}
    for dtype in model.coefficients:
        errors = [r["error"] for r in rows if r["dtype"] == dtype and r["held_out"]]
        if errors:
            summary[dtype] = error_summary(errors)
    model.validation = dict(rows=rows, summary=summary, repeats=repeats, seed=seed)
    return model.validation


def error_summary(errors: Sequence[float]) -> Dict[str, float]:
    """``measurements``, ``median_abs_error``, ``p90_abs_error`` and ``within_10pct`` of
    relative errors."""
    errors = sorted(abs(e) for e in errors)
    return dict(
        measurements=len(errors), median_abs_error=round(statistics.median(errors), 4),
        p90_abs_error=round(errors[min(len(errors) - 1, int(0.9 * len(errors)))], 4),
        within_10pct=round(sum(e <= 0.10 for e in errors) / len(errors), 4))


def default_model_path(exp: Path, threads: int) -> Path:
    """``<exp>/latency_model_<machine id>.json`` of this machine and thread count."""
    return Path(exp) / f"latency_model_{machine_id(threads)}.json"
