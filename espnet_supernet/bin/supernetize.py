#!/usr/bin/env python3
"""Turn a trained stock ESPnet Conformer model into a supernet to fine-tune.

Usage:
    python -m espnet_supernet.bin.supernetize \\
        --asr_train_config exp/asr_conformer/config.yaml \\
        --asr_model_file exp/asr_conformer/valid.acc.ave.pth \\
        --subnet_sizes 16 32 48 --outdir exp/asr_supernetized
    # or --model_zip model.zip (an espnet2.bin.pack asr zip) instead of the two files;
    # or a learned selection instead of static sizes, its step 1 from the trained weights:
    #   --selection ortho_softmax --selection_conf budgets=[0.4,0.7,1.0] \\
    #   --selection_conf selection_epochs=1
    ./run.sh --stage 11 --asr_config exp/asr_supernetized/config.yaml \\
        --asr_args "--init_param exp/asr_supernetized/model.pth"   # fine-tune, then 12-14

Writes into ``--outdir``:
    config.yaml          the supernet config: the stock encoder_conf + the subnets,
                         ``model: supernet`` distilling from a frozen copy of the original
                         (``--teacher frozen``) or from the largest size (``inplace``),
                         ``max_epoch`` = ``--finetune_fraction`` of the original's
    model.pth            the original's weights in the supernet (and its frozen teacher)
    supernetize.json     what was converted and the full-size check (max |supernet full
                         size - original| encoder output difference, <= 1e-5)

Run it from the recipe directory of the original experiment (its config names the
feature statistics and token list by recipe-relative paths). Fine-tune with the original's
token list and features. See docs/recipe.md ("A model you already trained").
"""

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import List, Optional

import torch
import yaml

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.checkpoint import CheckpointError, load_state_dict_file
from espnet_supernet.train.supernetize import TEACHERS, read_model, supernetize


def _value(text: str):
    """``key=value`` of --selection_conf, the value parsed as YAML (``[0.4,1.0]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, yaml.safe_load(value)


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, help="the stock model's config.yaml")
    parser.add_argument("--asr_model_file", type=Path, help="its weights (.pth)")
    parser.add_argument("--model_zip", type=Path,
                        help="an espnet2.bin.pack zip instead of the two files above")
    parser.add_argument("--outdir", type=Path, required=True, help="where to write")
    parser.add_argument("--subnet_sizes", type=int, nargs="+",
                        help="named sizes as module counts (4 modules per block with macaron "
                        "FFNs), e.g. 16 32 48 of a 12-block model")
    parser.add_argument("--subnet_rule", default="layers", choices=("layers", "modules"),
                        help="static rule of the sizes (default: whole blocks evenly spread)")
    parser.add_argument("--selection", choices=("simple_topk", "iterative_zero_out",
                                                "ortho_softmax"),
                        help="a learned selection instead of static sizes (step 1 runs in "
                        "the fine-tuning, from the trained weights)")
    parser.add_argument("--selection_conf", type=_value, action="append", default=[],
                        metavar="KEY=VALUE", help="the selection's options (repeatable)")
    parser.add_argument("--teacher", default="frozen", choices=TEACHERS,
                        help="distil from a frozen copy of the original (default) or from "
                        "the largest size of each step")
    parser.add_argument("--kd_weight", type=float, default=1.0,
                        help="weight of the distillation loss (model_conf.inplace_kd_weight)")
    parser.add_argument("--per_size_ctc", action="store_true",
                        help="each size its own CTC head (copies of the original's)")
    parser.add_argument("--finetune_fraction", type=float, default=0.25,
                        help="fine-tuning epochs as a fraction of the original's max_epoch")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Convert and write the outputs; returns the supernetize.json record."""
    with tempfile.TemporaryDirectory() as unpacked:
        config_path, model_path = read_model(args.asr_train_config, args.asr_model_file,
                                             args.model_zip, Path(unpacked))
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        state_dict = load_state_dict_file(model_path)
        new_config, state, difference = supernetize(
            config, state_dict, subnet_sizes=args.subnet_sizes, subnet_rule=args.subnet_rule,
            selection=args.selection, selection_conf=dict(args.selection_conf),
            teacher=args.teacher, kd_weight=args.kd_weight,
            finetune_fraction=args.finetune_fraction, per_size_ctc=args.per_size_ctc)
    args.outdir.mkdir(parents=True, exist_ok=True)
    (args.outdir / "config.yaml").write_text(yaml.safe_dump(new_config, sort_keys=False),
                                             encoding="utf-8")
    torch.save(state, args.outdir / "model.pth")
    record = dict(source=dict(config=str(config_path if args.model_zip is None
                                         else args.model_zip),
                              model=str(model_path if args.model_zip is None
                                        else args.model_zip)),
                  sizes=new_config["encoder_conf"].get("subnet_sizes"),
                  selection=new_config.get("selection"), teacher=args.teacher,
                  max_epoch=new_config["max_epoch"], max_full_size_difference=difference)
    (args.outdir / "supernetize.json").write_text(json.dumps(record, indent=2) + "\n")
    logging.info(f"wrote {args.outdir}/config.yaml and model.pth: fine-tune with ./run.sh "
                 f"--stage 11 --asr_config {args.outdir}/config.yaml --asr_args "
                 f"\"--init_param {args.outdir}/model.pth\"")
    return record


def main(cmd: Optional[List[str]] = None) -> None:
    """Parse the arguments and convert."""
    run_cli("supernetize", get_parser(), cmd, run,
            (FileNotFoundError, ValueError, CheckpointError))


if __name__ == "__main__":
    main()
