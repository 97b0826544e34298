"""Export a subnet (or a sparsity level) of a loaded supernet into a directory, checked.

``export_model`` writes a named size or a unit mask of a Conformer CTC supernet (a stock
``conformer`` for whole blocks, else a ``pruned_conformer``; optionally the ESPnet pack
zip, ``encoder_ctc.onnx`` and ``model_int8.pth``) or a named size of a TODM supernet
(``supernet_mhssm``); ``export_sparse_model`` writes a sparsity level of an Omni-sparsity
model (compressed weights, or a smaller dense ``pruned_conformer`` for ``ffn_rows``).
Each loads the written files back, checks that the encoder output equals the masked
supernet's and writes ``export.json``; ``export_checkpoint`` does either from the files of
a trained experiment. The command line is ``espnet_supernet.bin.export``.
"""

import io
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional

import torch
import yaml

from espnet_supernet.export.export_files import pack, write_export
from espnet_supernet.export.mhssm_export import export_mhssm_subnet
from espnet_supernet.export.quantize import quantize_int8
from espnet_supernet.export.sparse_export import activate_levels, export_sparsity_level
from espnet_supernet.export.sparse_storage import read_sparse_file
from espnet_supernet.export.subnet_export import export_subnet
from espnet_supernet.export.supernet_loading import build_from_config, load_supernet
from espnet_supernet.train.supernet_transducer_model import SupernetTransducerModel

MAX_DIFFERENCE = 1e-4


@torch.no_grad()
def max_encoder_difference(supernet: torch.nn.Module, exported: torch.nn.Module,
                           seconds: float = 10.0, seed: int = 0) -> float:
    """max |encoder output| difference of the two models (eval) on a random waveform
    (a batch of 2, the second 3/4 as long)."""
    speech = torch.randn(2, int(16000 * seconds), generator=torch.Generator().manual_seed(seed))
    lengths = torch.tensor([speech.size(1), speech.size(1) * 3 // 4])
    a, a_lens = supernet.encode(speech, lengths)
    b, b_lens = exported.eval().encode(speech, lengths)
    a, b = (x[0] if isinstance(x, tuple) else x for x in (a, b))  # drop intermediate CTC
    if not torch.equal(a_lens, b_lens):
        raise RuntimeError(f"encoder lengths differ: {a_lens.tolist()} vs {b_lens.tolist()}")
    valid = torch.arange(a.size(1))[None] < a_lens[:, None]
    return float((a - b).abs()[valid].max())


def export_model(supernet: torch.nn.Module, train_config: dict, outdir: Path, name: str,
                 mask: Optional[List[int]] = None, pack_zip: bool = True, onnx: bool = True,
                 quantize: Optional[str] = None, source: Optional[dict] = None,
                 stock_encoder: bool = True) -> dict:
    """Export a subnet of the loaded supernet into ``outdir``.

    Args:
        supernet: the loaded supernet (eval mode).
        train_config: its training config.
        outdir: the directory to write.
        name: the named size to export (with ``mask``: the export's label).
        mask: a unit mask of a Conformer supernet instead of a named size.
        pack_zip: write the ESPnet pack zip ``asr_<name>.zip``.
        onnx: write ``encoder_ctc.onnx`` and check it with onnxruntime (CTC models only).
        quantize: ``"int8"``: also write ``model_int8.pth`` (dynamic int8 Linear layers).
        source: recorded as where the supernet came from.
        stock_encoder: whole blocks as ESPnet's ``conformer`` (else ``pruned_conformer``).

    Returns:
        The record written to ``outdir/export.json``.
    """
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
    if diff > MAX_DIFFERENCE:
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
        record.update(_onnx_files(exported, result.config, outdir))
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


def _onnx_files(exported: torch.nn.Module, config: dict, outdir: Path) -> dict:
    """Write ``encoder_ctc.onnx``; its path, size and max difference to PyTorch."""
    try:
        from espnet_supernet.export.onnx_export import export_onnx, onnx_parity
    except ImportError as error:
        raise ValueError(f"ONNX export needs onnx and onnxruntime ({error}): "
                         "pip install 'espnet_supernet[export]', or --onnx false") from None

    path = export_onnx(exported, outdir / "encoder_ctc.onnx")
    feats = torch.randn(2, 1000, _feat_dim(exported, config),
                        generator=torch.Generator().manual_seed(0))
    return {"onnx": str(path), "onnx_bytes": path.stat().st_size,
            "onnx_max_difference": onnx_parity(exported, path, feats,
                                               torch.tensor([1000, 700]))}


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
    indices = activate_levels(supernet, name, block_levels)
    diff = max_encoder_difference(supernet, exported)
    supernet.set_subnet(previous)
    if diff > MAX_DIFFERENCE:
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


def export_checkpoint(config: Path, model_file: Path, outdir: Path, subnet: str,
                      sparsity_search: Optional[Path] = None, pack_zip: bool = True,
                      onnx: bool = True, quantize: Optional[str] = None,
                      stock_encoder: bool = True) -> dict:
    """Load the supernet of ``config`` + ``model_file`` and export ``subnet`` into
    ``outdir``: a sparsity level (or, with ``sparsity_search``, that YAML's per-layer
    sparsities) of an Omni-sparsity model, else a size (see ``export_model``)."""
    supernet, train_config = load_supernet(config, model_file)
    source = {"config": str(config), "model": str(model_file)}
    if getattr(supernet, "sparsity", None) is not None:
        block_sparsity = None
        if sparsity_search is not None:
            if not sparsity_search.is_file():
                raise FileNotFoundError(f"{sparsity_search} does not exist")
            block_sparsity = yaml.safe_load(sparsity_search.read_text())["block_sparsity"]
        return export_sparse_model(supernet, train_config, outdir, subnet,
                                   block_sparsity=block_sparsity, source=source)
    if sparsity_search is not None:
        raise ValueError("--sparsity_search needs a model trained with sparsity: omni")
    return export_model(supernet, train_config, outdir, subnet, pack_zip=pack_zip, onnx=onnx,
                        quantize=quantize, stock_encoder=stock_encoder, source=source)


def _feat_dim(model: torch.nn.Module, config: dict) -> int:
    """Feature dimension the encoder reads (the frontend's output)."""
    if model.frontend is not None:
        return model.frontend.output_size()
    return int(config["input_size"])
