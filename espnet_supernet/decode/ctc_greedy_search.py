"""CTC best-path (greedy) decoding behind ESPnet's beam-search interface.

ESPnet's ``Speech2Text`` decodes a CTC-only model with its label-synchronous beam search
and the CTC prefix scorer, even with ``beam_size: 1``: every output token rescoring the whole
utterance (about 1.3 s per utterance for the CPU demo model). The best path (argmax per
frame, repeats merged, blanks removed) needs one pass over the CTC posteriors.
"""

from typing import List, Sequence

import torch
from espnet.nets.beam_search import Hypothesis


def best_path(log_probs: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """Token ids of the CTC best path of ``log_probs`` (T, V): argmax, merge, drop blanks."""
    best = log_probs.argmax(-1)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[1:] = best[1:] != best[:-1]
    return best[keep & (best != blank)]


class CTCGreedySearch(torch.nn.Module):
    """Drop-in for ``Speech2Text.beam_search``: one hypothesis, the CTC best path.

    Args:
        ctc: the model's CTC module (``log_softmax`` of (B, T, D) encoder output).
        sos, eos: ids framing ``Hypothesis.yseq`` as ESPnet's beam search does.
        token_list: the model's tokens.
        blank: the CTC blank id.
    """

    def __init__(self, ctc: torch.nn.Module, sos: int, eos: int,
                 token_list: Sequence[str], blank: int = 0):
        super().__init__()
        self.ctc = ctc
        self.sos, self.eos, self.blank = sos, eos, blank
        self.token_list = list(token_list)
        self.nn_dict = torch.nn.ModuleDict()  # no decoder (Speech2Text looks for one)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, maxlenratio: float = 0.0,
                minlenratio: float = 0.0) -> List[Hypothesis]:
        """Decode one encoder output ``x`` (T, D); the length ratios do not apply."""
        log_probs = self.ctc.log_softmax(x.unsqueeze(0))[0]
        tokens = best_path(log_probs, self.blank)
        score = log_probs.max(-1).values.sum()
        yseq = torch.cat([x.new_tensor([self.sos], dtype=torch.long), tokens,
                          x.new_tensor([self.eos], dtype=torch.long)])
        return [Hypothesis(yseq=yseq, score=score, scores={"ctc": score}, states={})]
