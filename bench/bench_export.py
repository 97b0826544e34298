#!/usr/bin/env python3
"""CPU benchmark of exported subnets: exported vs masked supernet vs stock ESPnet.

Usage:
    .venv/bin/python bench/bench_export.py [--config demo] [--components] [--threads 2]
        [--batch 4] [--seconds 6] [--repeats 7] [--warmup 2] [--quick] [--output PATH]

The supernet (``bench_common``'s configs, random weights) gets its named sizes and, with
``--components``, 4 FFN chunks per FFN, prunable heads and ``bench_common``'s component
subnets. For each subnet one run measures, on the same batch:

- the encoder forward of the masked supernet, of the exported model (stock ``conformer``
  for whole blocks, ``pruned_conformer`` otherwise) and of a stock ESPnet
  ``ConformerEncoder`` of the same shape (for a pruned export: stock ``EncoderLayer``
  forwards over the same shrunk modules, when every block keeps its MHSA and FFN, which the
  stock layer always calls); goal exported <= 1.05 x stock; for whole-block sizes also
  the same blocks exported as ``pruned_conformer`` (``--stock_encoder false``:
  ``pruned_export_vs_masked``);
- parameters, ``torch.save`` file size of the exported model and their fractions of the
  full model's, next to the FLOPs fraction; goal file-size fraction within 5% of the
  parameter fraction.

Writes ``bench/results/export_<config>[_components].json`` and prints a table. A benchmark,
not a test: it never fails on a missed goal.
"""

import argparse
import copy
import io
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    CONFIGS,
    add_timing_arguments,
    build_supernet,
    component_masks,
    fill_timing_defaults,
    interleaved,
    machine_info,
    make_batch,
    median_ratio,
    train_config,
    write_result,
)

GOAL_EXPORTED_VS_STOCK = 1.05
GOAL_FILE_SLACK = 0.05


def stock_same_shape(exported_encoder) -> Optional[torch.nn.Module]:
    """A stock ``ConformerEncoder`` running the exported blocks' modules with ESPnet's own
    ``EncoderLayer.forward`` (None if a block lacks its MHSA or FFN)."""
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    from espnet_supernet.nets.pruned_conformer_encoder import PrunedConformerEncoder

    if not isinstance(exported_encoder, PrunedConformerEncoder):
        return exported_encoder  # already ESPnet's class and forward
    stock = copy.deepcopy(exported_encoder)
    for layer in stock.encoders:
        if not all(hasattr(layer, m) for m in ("self_attn", "feed_forward")):
            return None
        for module, norm in (("feed_forward_macaron", "norm_ff_macaron"),
                             ("conv_module", "norm_conv")):
            if not hasattr(layer, module):  # EncoderLayer checks these for None
                setattr(layer, module, None)
                setattr(layer, norm, None)
    stock.forward = ConformerEncoder.forward.__get__(stock)
    return stock


def file_bytes(state: Dict[str, torch.Tensor]) -> int:
    """Size of ``torch.save(state)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def run(args: argparse.Namespace) -> dict:
    """Measure every subnet; returns the JSON record."""
    from espnet_supernet.export.subnet_export import export_subnet
    from espnet_supernet.nets.subnet_cost import flops_table
    from espnet_supernet.tasks.asr import SupernetASRTask

    torch.set_num_threads(args.threads)
    loadavg = list(__import__("os").getloadavg())
    model = build_supernet(args.config, args.components)
    config = train_config(args.config, args.components)
    build = lambda conf: SupernetASRTask.build_model(argparse.Namespace(**conf))  # noqa: E731
    subnets: Dict[str, Optional[List[int]]] = {n: None for n in model.subnet_names}
    if args.components:
        subnets.update(component_masks(model.encoder, args.seed))
    flops = flops_table(model.encoder)
    xs, ilens = make_batch(args.batch, args.seconds, model.encoder.input_size)
    full_params = full_bytes = None  # of the largest subnet, measured first
    rows = {}
    largest = model.subnet_names[-1]
    order = [largest] + [n for n in subnets if n != largest]  # fractions of the largest
    for name in order:
        mask = subnets[name]
        result = export_subnet(model, config, name, build, mask=mask)
        exported = build(result.config).eval()
        exported.load_state_dict(result.state_dict, strict=True)
        stock = stock_same_shape(exported.encoder)
        size = file_bytes(result.state_dict)
        full_bytes, full_params = full_bytes or size, full_params or result.num_params
        encoder = model.encoder
        items = [("masked", lambda: None, lambda: encoder(xs, ilens)),
                 ("exported", lambda: None, lambda: exported.encoder(xs, ilens))]
        if stock is not None:
            items.append(("stock", lambda: None, lambda: stock(xs, ilens)))
        pruned = None
        if result.encoder == "conformer":  # the same blocks as a pruned_conformer
            pruned_export = export_subnet(model, config, name, build, mask=mask,
                                          stock_encoder=False)
            pruned = build(pruned_export.config).eval()
            pruned.load_state_dict(pruned_export.state_dict, strict=True)
            items.append(("pruned_export", lambda: None, lambda: pruned.encoder(xs, ilens)))
        with torch.inference_mode():
            diff = float((encoder(xs, ilens)[0] - exported.encoder(xs, ilens)[0]).abs().max())
            times = interleaved(items, args.repeats, args.warmup)
        row = dict(
            encoder=result.encoder, blocks=len(result.kept_blocks), params=result.num_params,
            params_fraction=result.num_params / full_params,
            flops_fraction=flops.subnet(encoder.active_mask) / flops.total,
            file_bytes=size, file_fraction=size / full_bytes,
            ms={k: statistics.median(v) for k, v in times.items()},
            exported_vs_masked=median_ratio(times["exported"], times["masked"]),
            exported_vs_stock=(median_ratio(times["exported"], times["stock"])
                               if stock is not None else None),
            pruned_export_vs_masked=(median_ratio(times["pruned_export"], times["masked"])
                                     if pruned is not None else None),
            max_abs_difference=diff,
        )
        row["goal_speed_met"] = (row["exported_vs_stock"] is None
                                 or row["exported_vs_stock"] <= GOAL_EXPORTED_VS_STOCK)
        row["goal_file_met"] = abs(row["file_fraction"] - row["params_fraction"]) <= \
            GOAL_FILE_SLACK * row["params_fraction"]
        rows[name] = row
    return dict(config=args.config, components=args.components, threads=args.threads,
                batch=args.batch, seconds=args.seconds, repeats=args.repeats,
                goals=dict(exported_vs_stock=GOAL_EXPORTED_VS_STOCK,
                           file_fraction_within=GOAL_FILE_SLACK),
                machine=machine_info(args.threads, loadavg), subnets=rows)


def print_table(res: dict) -> None:
    """One line per subnet."""
    print(f"{'subnet':>16} {'encoder':>16} {'params':>7} {'flops':>6} {'file':>6} "
          f"{'exp ms':>8} {'exp/mask':>8} {'exp/stock':>9} {'pruned/mask':>11} {'max|d|':>8}")
    for name, r in res["subnets"].items():
        vs = "-" if r["exported_vs_stock"] is None else f"{r['exported_vs_stock']:.3f}"
        pr = r.get("pruned_export_vs_masked")
        pr = "-" if pr is None else f"{pr:.3f}"
        print(f"{name:>16} {r['encoder']:>16} {r['params_fraction']:7.3f} "
              f"{r['flops_fraction']:6.3f} {r['file_fraction']:6.3f} "
              f"{r['ms']['exported']:8.1f} {r['exported_vs_masked']:8.3f} {vs:>9} {pr:>11} "
              f"{r['max_abs_difference']:8.1e}")


def main(cmd: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    parser.add_argument("--components", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    add_timing_arguments(parser)
    args = fill_timing_defaults(parser.parse_args(cmd))
    stem = f"export_{args.config}" + ("_components" if args.components else "")
    return write_result(run(args), args, stem, print_table)

if __name__ == "__main__":
    main()
