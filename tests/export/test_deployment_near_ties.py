"""deploy_report accepts a greedy-path difference only where rounding explains it."""

from pathlib import Path

import numpy as np
import soundfile
import torch

from espnet_supernet.deploy.deployment_report import differing_utterances, unexplained_argmax_flip


class FixedPosteriors(torch.nn.Module):
    """A stand-in ASR model whose CTC log-posteriors are given: (T, V) for any input."""

    def __init__(self, logp: torch.Tensor):
        super().__init__()
        self.logp = logp
        self.ctc = self

    def encode(self, speech, lengths):
        return self.logp[None], torch.tensor([self.logp.shape[0]])

    def log_softmax(self, enc):
        return enc


def _wav(tmp_path: Path) -> str:
    path = tmp_path / "a.wav"
    soundfile.write(path, np.zeros(1600, dtype="float32"), 16000)
    return str(path)


def test_a_near_tie_flip_is_rounding_and_a_real_one_is_not(tmp_path):
    base = torch.log_softmax(torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.0 + 1e-6, 0.0]]), -1)
    rounded = base.clone()
    rounded[1, 0] += 2e-6  # frame 1: argmax 1 -> 0, within rounding of the tie
    wav = _wav(tmp_path)
    assert unexplained_argmax_flip(FixedPosteriors(base), FixedPosteriors(rounded), wav) is None
    other = base.clone()
    other[0] = torch.log_softmax(torch.tensor([0.0, 3.0, 0.0]), -1)  # a confident other token
    reason = unexplained_argmax_flip(FixedPosteriors(base), FixedPosteriors(other), wav)
    assert reason is not None and reason.startswith("max log-posterior difference")
    almost = base.clone()
    almost[0, 1] += 0.9e-3  # within MAX_LOGP_DIFFERENCE: rounding
    assert unexplained_argmax_flip(FixedPosteriors(base), FixedPosteriors(almost), wav) is None
    almost[0, 1] += 0.2e-3  # 1.1e-3: beyond it
    assert unexplained_argmax_flip(FixedPosteriors(base), FixedPosteriors(almost), wav) \
        == "max log-posterior difference 1.10e-03 > 0.001"
    shorter = unexplained_argmax_flip(FixedPosteriors(base), FixedPosteriors(base[:1]), wav)
    assert shorter == "output lengths (2, 3) vs (1, 3)"


def test_differing_utterances_lists_changed_and_missing_keys(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("u1 A B\nu2 C\nu3 D\n")
    b.write_text("u1 A B\nu2 CC\n")
    assert differing_utterances(a, b) == ["u2", "u3"]
