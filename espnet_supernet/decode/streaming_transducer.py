"""Streaming transducer decoding: frame-synchronous search over encoder frames as they
arrive, for a TODM supernet at any named size and for an exported size.

TODM (Shangguan et al., "TODM: Train Once Deploy Many", ICASSP 2024) targets on-device
streaming ASR; its MH-SSM encoder streams chunk by chunk
(:meth:`~espnet_supernet.nets.mhssm_encoder.MHSSMEncoder.forward_streaming`). This module
decodes those frames as they come, carrying the search state between chunks, so a stream
gives exactly the hypotheses of the same search on the whole utterance:

- ``beam_size: 1``, greedy: at every frame the most likely symbol is emitted unless it is
  blank (at most one symbol per frame), the search of ESPnet's
  ``BeamSearchTransducer.greedy_search`` (``espnet2.asr.transducer``), whose result it equals on the whole utterance;
- ``beam_size`` > 1: frame-synchronous beam search with at most one symbol per frame
  (the "modified beam search" of Kang et al., "Fast and parallel decoding for
  transducer", ICASSP 2023): each hypothesis extends by blank or by one of its best
  symbols, hypotheses with the same labels merge (their probabilities add), the best
  ``beam_size`` are kept. ESPnet's own beam searches are not frame-synchronous in this
  way, so they cannot stop between two chunks.

:class:`StreamingTransducer` puts the encoder and the search together: ``accept`` a chunk
of feature frames, or ``accept_audio`` a chunk of waveform (the model's front end and
normalisation computed as the samples arrive, ``streaming_features.py``) and
``finish_audio`` at the end of the stream.
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from espnet.nets.transducer_decoder_interface import Hypothesis

from espnet_supernet.decode.streaming_features import StreamingFeatures


@dataclass
class SearchState:
    """What the search carries from chunk to chunk.

    Attributes:
        hyps: the kept hypotheses, best first (``yseq`` starts with blank).
        cache: the prediction network's outputs by label sequence (ESPnet's ``score``
            cache).
        frames: encoder frames consumed so far.
        first_token_frame: the frame at which the best hypothesis's first symbol was
            emitted (None before it).
    """

    hyps: List[Hypothesis]
    cache: Dict[str, Any] = field(default_factory=dict)
    frames: int = 0
    first_token_frame: Optional[int] = None


class StreamingTransducerSearch:
    """Frame-synchronous greedy / beam search of a transducer.

    Args:
        decoder: ESPnet's ``TransducerDecoder`` (``init_state``, ``score``).
        joint_network: ESPnet's ``JointNetwork``.
        beam_size: 1 for greedy.
        blank_id: the blank symbol.
    """

    def __init__(self, decoder: torch.nn.Module, joint_network: torch.nn.Module,
                 beam_size: int = 1, blank_id: int = 0):
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.decoder, self.joint_network = decoder, joint_network
        self.beam_size, self.blank_id = beam_size, blank_id

    def start(self) -> SearchState:
        """The state before the first frame."""
        return SearchState([Hypothesis(score=0.0, yseq=[self.blank_id],
                                       dec_state=self.decoder.init_state(1))])

    @torch.no_grad()
    def advance(self, state: SearchState, enc_frames: torch.Tensor) -> SearchState:
        """Consume encoder frames (T_c, D) (T_c may be 0); returns the new state."""
        for enc_t in enc_frames:
            state.hyps = (self._greedy_step if self.beam_size == 1 else self._beam_step)(
                state, enc_t)
            if state.first_token_frame is None and len(state.hyps[0].yseq) > 1:
                state.first_token_frame = state.frames
            state.frames += 1
        return state

    def _log_probs(self, state: SearchState, hyp: Hypothesis, enc_t: torch.Tensor):
        dec_out, dec_state, _ = self.decoder.score(hyp, state.cache)
        return torch.log_softmax(self.joint_network(enc_t, dec_out), dim=-1), dec_state

    def _greedy_step(self, state: SearchState, enc_t: torch.Tensor) -> List[Hypothesis]:
        (hyp,) = state.hyps
        logp, dec_state = self._log_probs(state, hyp, enc_t)
        top_logp, pred = torch.max(logp, dim=-1)
        if int(pred) != self.blank_id:
            hyp.yseq.append(int(pred))
            hyp.score += float(top_logp)
            hyp.dec_state = dec_state
        return [hyp]

    def _beam_step(self, state: SearchState, enc_t: torch.Tensor) -> List[Hypothesis]:
        merged: Dict[tuple, Hypothesis] = {}

        def add(yseq: List[int], score: float, dec_state) -> None:
            key = tuple(yseq)
            if key in merged:  # same labels by another path: probabilities add
                old = merged[key]
                old.score = float(torch.logaddexp(torch.tensor(old.score), torch.tensor(score)))
            else:
                merged[key] = Hypothesis(score=score, yseq=list(yseq), dec_state=dec_state)

        for hyp in state.hyps:
            logp, dec_state = self._log_probs(state, hyp, enc_t)
            add(hyp.yseq, hyp.score + float(logp[self.blank_id]), hyp.dec_state)
            labels = logp.clone()
            labels[self.blank_id] = -math.inf
            values, ids = labels.topk(min(self.beam_size, labels.numel() - 1))
            for value, k in zip(values.tolist(), ids.tolist()):
                add(hyp.yseq + [k], hyp.score + value, dec_state)
        return sorted(merged.values(), key=lambda h: h.score, reverse=True)[: self.beam_size]

    @staticmethod
    def best(state: SearchState) -> List[int]:
        """The best hypothesis's symbols (blank start removed)."""
        return list(state.hyps[0].yseq[1:])


class StreamingTransducer:
    """An MH-SSM transducer model (supernet at its active size, or an exported size)
    decoding a stream of feature frames.

    Args:
        model: ``supernet_transducer`` with an MH-SSM encoder, in eval mode; features are
            what its encoder takes (after the front end and normalisation).
        beam_size: 1 for greedy.
    """

    def __init__(self, model: torch.nn.Module, beam_size: int = 1):
        if model.training:
            raise RuntimeError("streaming decoding needs eval mode (call model.eval())")
        self.encoder = model.encoder
        self.search = StreamingTransducerSearch(model.decoder, model.joint_network,
                                                beam_size, model.blank_id)
        frontend = getattr(model, "frontend", None)
        self.features = None if frontend is None else StreamingFeatures(
            frontend, getattr(model, "normalize", None))
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self.encoder_state, self.search_state = None, self.search.start()
        if self.features is not None:
            self.features.reset()

    def accept_audio(self, samples: torch.Tensor) -> List[int]:
        """The next waveform samples (1, S) -> the best symbols so far."""
        if self.features is None:
            raise ValueError("the model has no front end: pass features to accept()")
        return self.accept(self.features.accept(samples))

    def finish_audio(self) -> List[int]:
        """End of the waveform stream: its last frames -> the final best symbols."""
        if self.features is None:
            raise ValueError("the model has no front end: pass features to accept()")
        return self.accept(self.features.finish())

    def accept(self, feats: torch.Tensor) -> List[int]:
        """The next feature frames (1, L, F) -> the best symbols so far."""
        enc, self.encoder_state = self.encoder.forward_streaming(feats, self.encoder_state)
        self.search.advance(self.search_state, enc[0])
        return self.search.best(self.search_state)
