"""Cost model: analytic FLOPs vs FlopCounterMode on the real forward, params vs numel."""

import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from tiny_models import TINY_ENCODER
from espnet_supernet.nets.subnet_cost import (
    flops_table,
    measured_flops_per_second,
    params_table,
)
from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder

COMPONENTS = dict(TINY_ENCODER, attention_heads=4, ffn_chunks=4, prune_heads=True)


def _masks(enc):
    gen = torch.Generator().manual_seed(0)
    n = enc.num_units
    yield [1] * n
    yield enc.layout.expand([0, 1, 1, 0] * 3)  # module level
    for p in (0.3, 0.6, 0.85):  # component level
        yield (torch.rand(n, generator=gen) < p).long().tolist()


@pytest.mark.parametrize("attention", ["rel_selfattn", "selfattn"])
@pytest.mark.parametrize("seconds", [2.0, 10.0])
def test_flops_model_equals_counted_flops(attention, seconds):
    """The analytic FLOPs are FlopCounterMode's count of the real forward (float rounding
    aside: measured to agree within 4e-16)."""
    pos = "rel_pos" if attention == "rel_selfattn" else "abs_pos"
    torch.manual_seed(0)
    enc = SupernetConformerEncoder(**dict(COMPONENTS, selfattention_layer_type=attention,
                                          pos_enc_layer_type=pos))
    table = flops_table(enc, seconds)
    for mask in _masks(enc):
        if not any(mask):
            continue
        counted = measured_flops_per_second(enc, mask, seconds)
        assert counted > 0
        assert table.subnet(mask) == pytest.approx(counted, rel=1e-12, abs=0)
    assert table.subnet([0] * enc.num_units) == table.fixed


def test_params_model_matches_numel_and_smaller_stock_encoders():
    torch.manual_seed(0)
    enc = SupernetConformerEncoder(**COMPONENTS)
    table = params_table(enc)
    assert table.total == sum(p.numel() for p in enc.parameters())
    # Half of every FFN's chunks == a stock Conformer with half the linear units.
    half_ffn = enc.layout.expand([1] * 12)
    for b in range(3):
        for start in (b * 13, b * 13 + 9):
            half_ffn[start + 2:start + 4] = [0, 0]
    stock_args = {k: v for k, v in COMPONENTS.items() if k not in ("ffn_chunks", "prune_heads")}
    stock = ConformerEncoder(**dict(stock_args, linear_units=12))
    assert table.subnet(half_ffn) == sum(p.numel() for p in stock.parameters())
    # One whole block == a stock 1-block Conformer.
    one_block = enc.layout.expand([0] * 8 + [1] * 4)
    stock1 = ConformerEncoder(**dict(stock_args, num_blocks=1))
    assert table.subnet(one_block) == sum(p.numel() for p in stock1.parameters())
    units = table.unit_costs()
    assert len(units) == enc.num_units
    assert sum(units) + table.fixed == pytest.approx(table.total, rel=1e-12, abs=0)
