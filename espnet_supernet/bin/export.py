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
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import torch
import yaml

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.export.mhssm_export import export_mhssm_subnet
from espnet_supernet.export.quantize import quantize_int8
from espnet_supernet.export.sparse_export import export_sparsity_level
from espnet_supernet.export.sparse_storage import compress_state_dict, read_sparse_file
from espnet_supernet.export.subnet_export import SubnetExport, export_subnet
from espnet_supernet.tasks.asr import SupernetASRTask
from espnet_supernet.train.supernet_transducer_model import SupernetTransducerModel
from espnet2.utils.types import str2bool


def load_supernet(config: Path, model_file: Optional[Path]) -> "tuple[torch.nn.Module, dict]":
    """Build the supernet of ``config`` and load ``model_file``; errors say what is wrong."""
    for path in (config, model_file):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist")
    train_config = yaml.safe_load(Path(config).read_text())
    if train_config.get("model") not in ("supernet", "supernet_transducer"):
        raise ValueError(f"{config} trains a '{train_config.get('model')}' model: export "
                         "supports the Conformer CTC supernet (model: supernet) and the "
                         "TODM RNN-T supernet (model: supernet_transducer)")
    try:
        model, _ = SupernetASRTask.build_model_from_file(config, model_file, "cpu")
    except RuntimeError as error:  # state-dict mismatch
        raise ValueError(f"the weights in {model_file} do not fit the model of {config} "
                         f"(use the config the checkpoint was trained with): {error}") from None
    return model.eval(), train_config


def build_from_config(config: dict) -> torch.nn.Module:
    """The model of a config dict, built by the ASR task (classes of this package too)."""
    return SupernetASRTask.build_model(argparse.Namespace(**config))


def write_export(export: SubnetExport, outdir: Path, compress: bool = False) -> dict:
    """Write config.yaml (with its files copied next to it) and model.pth (``compress``:
    in the sparse format of ``export/sparse_storage.py``)."""
    outdir.mkdir(parents=True, exist_ok=True)
    config = export.config
    stats = (config.get("normalize_conf") or {}).get("stats_file")
    if stats:
        config["normalize_conf"]["stats_file"] = str(_copy(stats, outdir / "feats_stats.npz"))
    if config.get("bpemodel"):
        config["bpemodel"] = str(_copy(config["bpemodel"], outdir / "bpe.model"))
    (outdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False,
                                                       allow_unicode=True))
    torch.save(compress_state_dict(export.state_dict) if compress else export.state_dict,
               outdir / "model.pth")
    return {"config": str(outdir / "config.yaml"), "model": str(outdir / "model.pth")}


def _copy(src: str, dst: Path) -> Path:
    if not Path(src).is_file():
        raise FileNotFoundError(f"{src} (referred to by the training config) does not exist: "
                                "run the export from the recipe directory")
    shutil.copyfile(src, dst)
    return dst.resolve()


@torch.no_grad()
def max_encoder_difference(supernet: torch.nn.Module, exported: torch.nn.Module,
                           seconds: float = 10.0, seed: int = 0) -> float:
    """max |encoder output| difference of the two models (eval) on a random waveform."""
    speech = torch.randn(2, int(16000 * seconds), generator=torch.Generator().manual_seed(seed))
    lengths = torch.tensor([speech.size(1), speech.size(1) * 3 // 4])
    a, a_lens = supernet.encode(speech, lengths)
    b, b_lens = exported.eval().encode(speech, lengths)
    if not torch.equal(a_lens, b_lens):
        raise RuntimeError(f"encoder lengths differ: {a_lens.tolist()} vs {b_lens.tolist()}")
    valid = torch.arange(a.size(1))[None] < a_lens[:, None]
    return float((a - b).abs()[valid].max())


def pack(outdir: Path, name: str) -> Path:
    """ESPnet pack zip of the export (``espnet2.bin.pack asr`` format)."""
    from espnet2.main_funcs.pack_funcs import pack as espnet_pack

    config = yaml.safe_load((outdir / "config.yaml").read_text())
    options = [p for p in ((config.get("normalize_conf") or {}).get("stats_file"),
                           config.get("bpemodel")) if p]
    outpath = outdir / f"asr_{name}.zip"
    espnet_pack(files={"asr_model_file": str(outdir / "model.pth")},
                yaml_files={"asr_train_config": str(outdir / "config.yaml")},
                option=options, outpath=str(outpath))
    return outpath


def export_model(supernet: torch.nn.Module, train_config: dict, outdir: Path, name: str,
                 mask: Optional[List[int]] = None, pack_zip: bool = True, onnx: bool = True,
                 quantize: Optional[str] = None, source: Optional[dict] = None,
                 stock_encoder: bool = True) -> dict:
    """Export a subnet of the loaded supernet into ``outdir``; returns the record written
    to ``outdir/export.json`` (see the module docstring)."""
    transducer = isinstance(supernet, SupernetTransducerModel)
    if transducer:
        if mask is not None:
            raise ValueError("a TODM supernet exports named (depth, width) sizes only")
        if onnx:
            logging.info("no ONNX export for transducer models (encoder_ctc.onnx is "
                         "encoder + CTC): skipped")
            onnx = False
        result = export_mhssm_subnet(supernet, train_config, name, build_from_config)
        supernet.set_subnet(name)
    else:
        result = export_subnet(supernet, train_config, name, build_from_config, mask=mask,
                               stock_encoder=stock_encoder)
    files = write_export(result, outdir)
    exported = build_from_config(result.config)
    exported.load_state_dict(torch.load(outdir / "model.pth"), strict=True)
    diff = max_encoder_difference(supernet, exported)
    if diff > 1e-4:
        raise RuntimeError(f"exported model differs from the masked supernet by {diff:.2e}")
    record = {
        "subnet": result.name, "encoder": result.encoder, "kept_blocks": result.kept_blocks,
        "blocks": result.blocks,
        "mask": None if transducer else supernet.encoder.active_mask,
        "params": result.num_params,
        "encoder_params": sum(p.numel() for p in exported.encoder.parameters()),
        "source": source or {}, "max_encoder_difference": diff,
        "model_bytes": (outdir / "model.pth").stat().st_size, **files,
    }
    if pack_zip:
        record["pack"] = str(pack(outdir, result.name))
    if onnx:
        try:
            from espnet_supernet.export.onnx_export import export_onnx, onnx_parity
        except ImportError as error:
            raise ValueError(f"ONNX export needs onnx and onnxruntime ({error}): "
                             "pip install 'espnet_supernet[export]', or --onnx false") from None

        path = export_onnx(exported, outdir / "encoder_ctc.onnx")
        feats = torch.randn(2, 1000, _feat_dim(exported, result.config),
                            generator=torch.Generator().manual_seed(0))
        record["onnx"] = str(path)
        record["onnx_bytes"] = path.stat().st_size
        record["onnx_max_difference"] = onnx_parity(exported, path, feats,
                                                    torch.tensor([1000, 700]))
    if quantize == "int8":
        path = outdir / "model_int8.pth"
        torch.save(quantize_int8(exported).state_dict(), path)
        record["int8_model"], record["int8_bytes"] = str(path), path.stat().st_size
    elif quantize is not None:
        raise ValueError(f"--quantize must be int8, got {quantize!r}")
    (outdir / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    logging.info("exported subnet %s (%s, %d blocks, %.2fM params) to %s; max |diff| %.1e",
                 result.name, result.encoder, len(result.kept_blocks), result.num_params / 1e6,
                 outdir, diff)
    return record


def export_sparse_model(supernet: torch.nn.Module, train_config: dict, outdir: Path,
                        name: str, source: Optional[dict] = None,
                        block_sparsity: Optional[Dict[int, float]] = None) -> dict:
    """Export sparsity level ``name`` (Omni-sparsity) into ``outdir``: compressed weights
    (unstructured) or a physically smaller dense model (``structure: ffn_rows``); with
    ``block_sparsity`` (encoder block -> trained level, ``sparsity_search``'s output) that
    per-layer configuration, labelled ``name``. Returns the record written to
    ``outdir/export.json``."""
    sparsity = supernet.sparsity
    block_levels = None
    if block_sparsity is not None:
        bad = {b: s for b, s in block_sparsity.items() if float(s) not in sparsity.levels}
        if bad:
            raise ValueError(f"block sparsities {bad} are not trained levels {sparsity.levels}")
        block_levels = {int(b): sparsity.levels.index(float(s))
                        for b, s in block_sparsity.items()}
    result = export_sparsity_level(supernet, train_config, name, build_from_config,
                                   block_levels)
    structured = result.encoder == "pruned_conformer"
    files = write_export(result, outdir, compress=not structured)
    exported = build_from_config(result.config)
    stored = read_sparse_file(outdir / "model.pth")
    exported.load_state_dict(stored if stored is not None else
                             torch.load(outdir / "model.pth"), strict=True)
    previous = supernet.active_subnet
    if block_levels is None:
        supernet.set_subnet(name)
    else:
        supernet.set_subnet(None)
        sparsity.set_layerwise(block_levels)
    indices = list(sparsity.active)
    diff = max_encoder_difference(supernet, exported)
    supernet.set_subnet(previous)
    if diff > 1e-4:
        raise RuntimeError(f"exported model differs from the masked supernet by {diff:.2e}")
    floats = [v for v in result.state_dict.values() if v.is_floating_point()]
    numel = sum(v.numel() for v in floats)
    nonzero = sum(int((v != 0).sum()) for v in floats)
    buffer = io.BytesIO()
    torch.save(result.state_dict, buffer)
    dense_bytes = buffer.getbuffer().nbytes
    model_bytes = (outdir / "model.pth").stat().st_size
    pruned = 0 if structured else sparsity.prunable_params - sparsity.nonzero_params(indices)
    record = {
        "subnet": name, "encoder": result.encoder, "structure": sparsity.structure,
        "sparsity": (sparsity.levels[sparsity.level_index(name)] if block_levels is None
                     else None), "block_sparsity": block_sparsity, "blocks": result.blocks,
        "params": result.num_params, "params_kept": result.num_params - pruned,
        "stored_density": nonzero / numel, "model_bytes": model_bytes,
        "dense_model_bytes": dense_bytes, "bytes_vs_dense": model_bytes / dense_bytes,
        # the compressed file's expected size: the nonzero values plus a 1-bit mask
        "expected_bytes": nonzero / numel * dense_bytes + (0 if structured else numel / 8),
        "max_encoder_difference": diff, "source": source or {}, **files}
    (outdir / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    logging.info("exported sparsity level %s (%s, %d of %d parameters kept): %.2f MB vs "
                 "%.2f MB dense; max |diff| %.1e", name, record["structure"],
                 record["params_kept"], record["params"],
                 model_bytes / 1e6, dense_bytes / 1e6, diff)
    return record


def export(args: argparse.Namespace) -> dict:
    """Export ``args.subnet`` of the supernet given on the command line."""
    supernet, train_config = load_supernet(args.asr_train_config, args.asr_model_file)
    if getattr(supernet, "sparsity", None) is not None:
        block_sparsity = None
        if args.sparsity_search is not None:
            if not args.sparsity_search.is_file():
                raise FileNotFoundError(f"{args.sparsity_search} does not exist")
            block_sparsity = yaml.safe_load(args.sparsity_search.read_text())["block_sparsity"]
        return export_sparse_model(
            supernet, train_config, args.outdir, args.subnet, block_sparsity=block_sparsity,
            source={"config": str(args.asr_train_config), "model": str(args.asr_model_file)})
    if args.sparsity_search is not None:
        raise ValueError("--sparsity_search needs a model trained with sparsity: omni")
    return export_model(
        supernet, train_config, args.outdir, args.subnet, pack_zip=args.pack, onnx=args.onnx,
        quantize=args.quantize, stock_encoder=args.stock_encoder,
        source={"config": str(args.asr_train_config), "model": str(args.asr_model_file)})


def _feat_dim(model: torch.nn.Module, config: dict) -> int:
    """Feature dimension the encoder reads (the frontend's output)."""
    if model.frontend is not None:
        return model.frontend.output_size()
    return int(config["input_size"])


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
