"""A light VGG front end with 4x time subsampling (``input_layer: vgg4``).

The front end of the Dynamic Encoder Size and OrthoSoftmax papers (Xu et al. 2024, 2025;
RWTH's ``VGG4LayerActFrontendV1``): four 3x3 convolutions with "same" padding on the
(time, frequency) plane, an activation after the second and the fourth, each followed by
a max-pooling of (2, 1) (time only: 4x subsampling, every frequency bin kept), then a
linear layer from channels x bins to the model dimension and the positional encoding::

    conv(1 -> c1) -> conv(c1 -> c2) -> act -> pool -> conv(c2 -> c3) -> conv(c3 -> c4)
        -> act -> pool -> linear(c4 * F -> d) -> pos_enc

With few channels it is a small part of the encoder's compute (the authors' 32, 64, 64,
32 are about a quarter at d = 384), unlike ESPnet's ``conv2d`` (two d-channel
convolutions), which is a third of a demo-size encoder's FLOPs, so small FLOPs budgets
become reachable. It has ESPnet's subsampling interface: ``forward(x, mask)`` returns the
positional encoding's output and the subsampled mask.
"""

from typing import Optional, Sequence, Tuple

import torch

VGG_INPUT_LAYERS = ("vgg4",)
DEFAULT_VGG_CHANNELS = (32, 64, 64, 32)


class VGG4Subsampling(torch.nn.Module):
    """Four 3x3 convolutions, two time poolings of 2, a linear layer to ``odim``.

    Args:
        idim: input feature dimension F (frequency bins).
        odim: output dimension d.
        pos_enc: positional encoding module applied last (ESPnet's).
        channels: output channels of the four convolutions.
        activation: ``relu`` (the authors') or ``silu``.
    """

    subsampling = 4

    def __init__(self, idim: int, odim: int, pos_enc: torch.nn.Module,
                 channels: Sequence[int] = DEFAULT_VGG_CHANNELS, activation: str = "relu"):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"vgg_channels must be 4 positive channel counts, got {channels}")
        if activation not in ("relu", "silu"):
            raise ValueError(f"vgg_activation must be relu or silu, got {activation!r}")
        ins = [1] + channels[:3]
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv2d(i, o, kernel_size=3, padding=1) for i, o in zip(ins, channels))
        self.act = torch.nn.ReLU() if activation == "relu" else torch.nn.SiLU()
        self.pool = torch.nn.MaxPool2d(kernel_size=(2, 1), stride=(2, 1))
        self.out = torch.nn.Linear(channels[3] * idim, odim)
        self.pos_enc = pos_enc

    @staticmethod
    def output_length(frames: int) -> int:
        """Output frames of ``frames`` input frames (two floor halvings)."""
        return frames // 2 // 2

    def forward(self, x: torch.Tensor, x_mask: Optional[torch.Tensor]
                ) -> Tuple[object, Optional[torch.Tensor]]:
        """(B, T, F), mask (B, 1, T) -> pos_enc((B, T // 4, d)), mask (B, 1, T // 4)."""
        h = x.unsqueeze(1)  # (B, 1, T, F)
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i % 2 == 1:
                h = self.pool(self.act(h))
        b, c, t, f = h.shape
        h = self.out(h.transpose(1, 2).reshape(b, t, c * f))
        if x_mask is not None:
            x_mask = x_mask[:, :, : 2 * (x_mask.size(2) // 2): 2]
            x_mask = x_mask[:, :, : 2 * (x_mask.size(2) // 2): 2]
        return self.pos_enc(h), x_mask


def install_vgg_frontend(encoder: torch.nn.Module, input_size: int, output_size: int,
                         channels: Sequence[int], activation: str) -> None:
    """Replace the ``embed`` of a Conformer encoder built with ``input_layer=None`` (which
    holds only the positional encoding) by a :class:`VGG4Subsampling` with that encoding."""
    pos_enc = encoder.embed[0]
    encoder.embed = VGG4Subsampling(input_size, output_size, pos_enc, channels, activation)
