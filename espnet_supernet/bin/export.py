#!/usr/bin/env python3
"""Export a named subnet of a trained supernet as a standalone, physically smaller model.

Usage:
    python -m espnet_supernet.bin.export --asr_train_config exp/asr/config.yaml \\
        --asr_model_file exp/asr/valid.loss.ave.pth --subnet 16 --outdir exp/export/16

Writes into ``--outdir``:
    config.yaml, model.pth   the standalone model. A subnet of whole blocks is a stock ESPnet
                             ``conformer`` (blocks renumbered) that plain
                             ``espnet2.bin.asr_inference`` decodes without this package
                             (``--stock_encoder false``: a ``pruned_conformer`` of full
                             blocks, this package's faster CPU forward);
                             any other subnet is an ``encoder: pruned_conformer`` (smaller
                             weight matrices, removed modules; decode with
                             ``espnet_supernet.bin.asr_inference``, no ``--subnet``).
    feats_stats.npz, ...     files the config refers to (normalisation stats, BPE model)
    asr_<subnet>.zip         ESPnet pack (``espnet2.bin.pack`` format) of the above
    encoder_ctc.onnx         encoder + CTC in ONNX (``--onnx true``), checked with onnxruntime
    model_int8.pth           with ``--quantize int8``: dynamic int8 Linear layers
    export.json              what was exported: kept blocks and module sizes, parameter
                             count, file sizes, max |exported - masked supernet| encoder
                             output difference, ONNX parity
A size of a TODM supernet (``model: supernet_transducer``, e.g. ``--subnet d2w0.5``) is
exported as a ``supernet_mhssm`` encoder built with that size's depth and widths only
(``export/mhssm_export.py``), with the transducer decoder and joint network; no ONNX file.
A sparsity level of an Omni-sparsity model (``--subnet sp70``) is exported as config.yaml,
model.pth and export.json only: compressed weights (bitmask + nonzero values, see
``export/sparse_storage.py``) for unstructured sparsity, a physically smaller dense
``pruned_conformer`` for ``structure: ffn_rows``; both decode with
``espnet_supernet.bin.asr_inference`` (no ``--subnet``).
The export carries the subnet's own BatchNorm statistics and (``per_size_ctc``) CTC head.
"""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.export.model_export import export_checkpoint
from espnet2.utils.types import str2bool


def export(args: argparse.Namespace) -> dict:
    """Export ``args.subnet`` of the supernet given on the command line."""
    return export_checkpoint(
        args.asr_train_config, args.asr_model_file, args.outdir, args.subnet,
        sparsity_search=args.sparsity_search, pack_zip=args.pack, onnx=args.onnx,
        quantize=args.quantize, stock_encoder=args.stock_encoder)


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True,
                        help="the supernet's config.yaml")
    parser.add_argument("--asr_model_file", type=Path, required=True,
                        help="the supernet's weights (e.g. valid.loss.ave.bncal.pth, whose "
                        "per-size BatchNorm statistics were re-estimated)")
    parser.add_argument("--subnet", required=True, help="named subnet to export (e.g. 16, "
                        "or sp70 for a sparsity level); with --sparsity_search: a label")
    parser.add_argument("--sparsity_search", type=Path, default=None,
                        help="sparsity_search's output YAML: export its per-layer "
                        "sparsities (Omni-sparsity models)")
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--stock_encoder", type=str2bool, default=True,
                        help="a subnet of whole blocks as ESPnet's stock conformer, which "
                        "plain ESPnet decodes (default); false: as a pruned_conformer "
                        "(needs espnet_supernet to load; its CPU front end is about twice "
                        "as fast as ESPnet's)")
    parser.add_argument("--pack", type=str2bool, default=True, help="write the ESPnet zip")
    parser.add_argument("--onnx", type=str2bool, default=True,
                        help="write encoder_ctc.onnx and check it with onnxruntime")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="also write model_int8.pth: PyTorch dynamic int8 quantization "
                        "of the Linear layers (load with "
                        "espnet_supernet.export.quantize.load_int8_model, or decode the "
                        "fp32 model with asr_inference --quantize_asr_model true)")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Export one subnet."""
    run_cli("export", get_parser(), cmd, export, (FileNotFoundError, TypeError, ValueError))


if __name__ == "__main__":
    main()
