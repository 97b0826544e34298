"""CTC best-path decoding behind the beam-search interface."""

import torch
from espnet2.asr.ctc import CTC

from espnet_supernet.decode.ctc_greedy_search import CTCGreedySearch, best_path


def _log_probs(path, vocab=5):
    """(T, V) log-probabilities whose per-frame argmax is ``path``."""
    lp = torch.full((len(path), vocab), -5.0)
    lp[torch.arange(len(path)), torch.tensor(path)] = -0.1
    return lp


def test_best_path_merges_repeats_and_drops_blanks():
    # frames: a a _ a b b _ _ c  ->  a a b c (a blank separates the two a's)
    assert best_path(_log_probs([1, 1, 0, 1, 2, 2, 0, 0, 3])).tolist() == [1, 1, 2, 3]
    assert best_path(_log_probs([0, 0, 0])).tolist() == []
    assert best_path(_log_probs([4, 4, 4])).tolist() == [4]


def test_search_returns_one_hypothesis_framed_like_beam_search():
    torch.manual_seed(0)
    ctc = CTC(odim=6, encoder_output_size=8)
    search = CTCGreedySearch(ctc, sos=5, eos=5, token_list=list("_abcd") + ["<sos/eos>"])
    x = torch.randn(20, 8)
    (hyp,) = search(x, maxlenratio=0.0, minlenratio=0.0)
    expected = best_path(ctc.log_softmax(x.unsqueeze(0))[0])
    assert hyp.yseq[0] == 5 and hyp.yseq[-1] == 5
    assert hyp.yseq[1:-1].tolist() == expected.tolist()
    assert torch.isclose(hyp.score, ctc.log_softmax(x.unsqueeze(0))[0].max(-1).values.sum())
