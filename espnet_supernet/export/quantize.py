"""Dynamic int8 quantization of exported models (PyTorch's ``quantize_dynamic``).

Linear layers get int8 weights (activations are quantized on the fly); convolutions,
norms and the front end stay fp32. This is what ESPnet's ``asr_inference
--quantize_asr_model true --quantize_modules Linear --quantize_dtype qint8`` does at load
time; here the quantized weights are also saved, so the file is smaller.
"""

from pathlib import Path

import torch


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` (eval) with dynamically quantized int8 ``Linear`` layers."""
    return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear},
                                                  dtype=torch.qint8)


def load_int8_model(float_model: torch.nn.Module, path: Path) -> torch.nn.Module:
    """Quantize ``float_model`` (built from the export's config.yaml) and load the int8
    weights saved by ``export --quantize int8``."""
    model = quantize_int8(float_model)
    model.load_state_dict(torch.load(path, weights_only=False), strict=True)
    return model
