"""RNN-T loss with ``warprnnt_pytorch.RNNTLoss``'s call signature on torchaudio's kernel.

ESPnet's transducer path calls ``criterion(joint_out, target, t_len, u_len)`` with a
warp-transducer loss that cannot be installed here; ``torchaudio.functional.rnnt_loss``
computes the same loss on CPU and GPU.
"""

import torch
import torchaudio


class TorchaudioRNNTLoss(torch.nn.Module):
    """Mean RNN-T loss over the batch.

    Args:
        blank: the blank id.
    """

    def __init__(self, blank: int = 0):
        super().__init__()
        self.blank = blank

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                logit_lengths: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
        """logits (B, T, U + 1, V), targets (B, U), lengths (B,) -> scalar."""
        return torchaudio.functional.rnnt_loss(
            logits.float(), targets.int(), logit_lengths.int(), target_lengths.int(),
            blank=self.blank, reduction="mean")
