"""A training run for the kill test: prints each optimizer step, can be killed and resumed.

    python kill_run.py CHECKPOINT_DIR OUTPUT [--resume]
"""

import sys

import torch

from optimlab import data
from optimlab import nn as onn
from optimlab.optim import Adam
from optimlab.train import Trainer


def main(checkpoints: str, output: str, resume: bool) -> None:
    # one thread, the case the test guarantees. With two, an earlier version's resumed run
    # differed from the straight one in the last bits about once in 15 tries (cause not
    # found); with the current code 44 of 44 two-thread trials were bit-identical (24 of them
    # two trials at once on 2 cores), and so was a resume from each of a run's 20 checkpoints
    torch.set_num_threads(1)
    torch.manual_seed(0)
    digits = data.digits(seed=0)
    model = onn.MLP(64, [32], 10, dropout=0.2)  # dropout: the RNG must be restored too
    opt = Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    opt.register_step_post_hook(lambda *args: print("STEP", flush=True))
    trainer = Trainer(model, opt, torch.nn.functional.cross_entropy, digits.train,
                      val=digits.val, batch_size=32, scheduler=sched, checkpoint_dir=checkpoints,
                      checkpoint_every=7, progress=False, seed=3)
    trainer.fit(3, resume=resume)
    torch.save({"params": [p.detach() for p in model.parameters()],
                "history": trainer.history.rows}, output)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--resume" in sys.argv)
