"""One process of the CPU DDP test (``test_ddp_gloo.py``): a few sandwich steps of the
tiny supernet on this rank's share of a fixed global batch, results written as JSON.

    python ddp_worker.py RANK WORLD_SIZE OUT_JSON INIT_FILE
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import make_model  # noqa: E402

GLOBAL_BATCH, STEPS = 4, 3


def global_batch(step: int):
    """The same (speech, lengths, text, text lengths) on every rank for ``step``."""
    gen = torch.Generator().manual_seed(100 + step)
    lens = torch.full((GLOBAL_BATCH,), 50)  # no padding: ESPnet's conv module mixes
    # padded frames into the last valid ones, so padding would depend on the split
    text_lens = torch.tensor([6, 5, 4, 3])
    text = torch.randint(1, 11, (GLOBAL_BATCH, 6), generator=gen)
    text[torch.arange(6)[None, :] >= text_lens[:, None]] = -1
    return torch.randn(GLOBAL_BATCH, 50, 20, generator=gen), lens, text, text_lens


def main() -> None:
    rank, world, out, init = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank,
                                world_size=world)
    model = make_model(sizes=(3, 6, 9, 12), encoder_conf={"subnet_rule": "modules"},
                       num_random=1)
    model.train()
    for module in model.modules():  # running statistics: a per-utterance computation
        if isinstance(module, torch.nn.BatchNorm1d):
            module.eval()
    net = DistributedDataParallel(model) if world > 1 else model
    optim = torch.optim.SGD(model.parameters(), lr=0.05)
    share = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    records = []
    for step in range(STEPS):
        plan = [name for _, name, _ in model.sandwich_plan(int(model.sandwich_step))]
        speech, lens, text, text_lens = (t[share] for t in global_batch(step))
        loss, stats, _ = net(speech, lens, text, text_lens)
        optim.zero_grad()
        loss.backward()
        optim.step()
        records.append(dict(plan=plan, keys=list(stats), loss=float(loss)))
    weight = model.encoder.encoders[1].feed_forward.w_1.weight
    Path(out).write_text(json.dumps(dict(records=records, weight=weight.flatten()[:50].tolist(),
                                         hostname=__import__("socket").gethostname())))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
