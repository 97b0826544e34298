"""The files of an export: config.yaml with the files it refers to, model.pth, the pack."""

import shutil
from pathlib import Path

import torch
import yaml

from espnet_supernet.export.sparse_storage import compress_state_dict
from espnet_supernet.export.subnet_export import SubnetExport


def write_export(export: SubnetExport, outdir: Path, compress: bool = False) -> dict:
    """Write config.yaml (with its files copied next to it) and model.pth (``compress``:
    in the sparse format of ``export/sparse_storage.py``).

    Returns:
        ``{"config": path, "model": path}`` of the written files.
    """
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


def pack(outdir: Path, name: str) -> Path:
    """ESPnet pack zip of the export in ``outdir`` (``espnet2.bin.pack asr`` format)."""
    from espnet2.main_funcs.pack_funcs import pack as espnet_pack

    config = yaml.safe_load((outdir / "config.yaml").read_text())
    options = [p for p in ((config.get("normalize_conf") or {}).get("stats_file"),
                           config.get("bpemodel")) if p]
    outpath = outdir / f"asr_{name}.zip"
    espnet_pack(files={"asr_model_file": str(outdir / "model.pth")},
                yaml_files={"asr_train_config": str(outdir / "config.yaml")},
                option=options, outpath=str(outpath))
    return outpath
