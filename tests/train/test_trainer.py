"""The Trainer: exact resume after SIGKILL, early stopping, schedules, the verdict."""

from __future__ import annotations

import os
import pickle
import random
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optimlab import data, optim
from optimlab import nn as onn
from optimlab.optim import SGD, Adam
from optimlab.train import Callback, EarlyStopping, Trainer, load_latest, save_atomic

SCRIPT = Path(__file__).with_name("kill_run.py")


def _start(*args):
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE,
                            text=True)


def _finish(proc, kill_after_steps=None):
    steps = 0
    if kill_after_steps is not None:
        for line in proc.stdout:
            steps += line.startswith("STEP")
            if steps == kill_after_steps:
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.communicate(timeout=300)
    return proc.returncode


def test_killed_run_resumes_to_the_same_bits(tmp_path):
    # the straight run and the one killed run side by side (independent processes)
    straight, killed_dir = tmp_path / "straight.pt", tmp_path / "b"
    procs = _start(str(tmp_path / "a"), str(straight)), _start(str(killed_dir),
                                                               str(tmp_path / "never.pt"))
    # 40 steps per epoch (1257 examples / 32): step 52 is inside epoch 2, after the checkpoint
    # at step 49
    assert _finish(procs[1], kill_after_steps=52) == -9
    assert _finish(procs[0]) == 0
    assert not (tmp_path / "never.pt").exists()
    # a damaged newest checkpoint and a leftover temporary file must be ignored
    (killed_dir / "ckpt-9999999999.pt").write_bytes(b"PK\x03\x04 half written")
    (killed_dir / ".tmp-ckpt-abc.pt").write_bytes(b"partial")
    resumed = tmp_path / "resumed.pt"
    assert _finish(_start(str(killed_dir), str(resumed), "--resume")) == 0
    a, b = torch.load(straight), torch.load(resumed)
    assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"], strict=True))
    assert a["history"] == b["history"]


def test_atomic_save_and_damaged_files(tmp_path):
    save_atomic({"x": 1}, str(tmp_path), 5)
    save_atomic({"x": 2}, str(tmp_path), 6)
    save_atomic({"x": 3}, str(tmp_path), 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-0000000006.pt",
                                                          "ckpt-0000000007.pt"]
    (tmp_path / "ckpt-0000000008.pt").write_bytes(b"garbage")
    assert load_latest(str(tmp_path)) == {"x": 3}


def test_checkpoint_keeps_the_rng_states_and_loads_weights_only(tmp_path):
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "numpy": np.random.get_state()}
    save_atomic({"rng": [rng], "model": {"w": torch.ones(2)}}, str(tmp_path), 1)
    loaded = load_latest(str(tmp_path))["rng"][0]
    assert torch.equal(loaded["torch"], rng["torch"]) and loaded["python"] == rng["python"]
    assert loaded["numpy"][0] == "MT19937" and np.array_equal(loaded["numpy"][1], rng["numpy"][1])
    np.random.set_state(loaded["numpy"])  # a state NumPy takes back


def test_cuda_generators_are_saved_and_restored(tmp_path, monkeypatch):
    """Once CUDA is in use, every device's generator goes into the checkpoint (dropout on a GPU
    draws from them) and comes back on as many devices as the resuming machine has. The test
    machines have no GPU: torch.cuda's functions stand in for two devices, resumed on one."""
    trainer = _digits_trainer(SGD, lr=0.1)
    states = [torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([3], dtype=torch.uint8)]
    restored = {}
    for name, value in (("is_available", lambda: True), ("is_initialized", lambda: True),
                        ("get_rng_state_all", lambda: states), ("device_count", lambda: 1),
                        ("set_rng_state", lambda s, d: restored.__setitem__(d, s))):
        monkeypatch.setattr(torch.cuda, name, value)
    save_atomic(trainer.state_dict(), str(tmp_path), 1)
    trainer.load_state_dict(load_latest(str(tmp_path)))
    assert list(restored) == [0] and torch.equal(restored[0], states[0])


class _Payload:
    """Unpickling this calls os.mkdir(path): code run by merely opening the file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    directory, marker = tmp_path / "ckpt", tmp_path / "code-ran"
    save_atomic({"x": 1}, str(directory), 1)
    malicious = directory / "ckpt-0000000002.pt"
    torch.save({"x": _Payload(str(marker))}, malicious)
    with pytest.raises(pickle.UnpicklingError, match="is refused"):
        load_latest(str(directory))  # an error, not a silent fall back to step 1
    assert not marker.exists()
    torch.load(malicious, weights_only=False)  # the payload is real: it runs when trusted
    assert marker.exists()


def test_save_makes_the_rename_durable(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", stat.S_ISDIR(info.st_mode), info.st_ino))
        fsync(fd)

    def recording_replace(source, target):
        events.append(("replace",))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    save_atomic({"x": 1}, str(tmp_path), 1)
    renamed = events.index(("replace",))
    assert any(e[0] == "fsync" and not e[1] for e in events[:renamed])  # the file's data
    assert ("fsync", True, tmp_path.stat().st_ino) in events[renamed:]  # then its name


class Scripted(torch.nn.Module):
    """A 'model' whose validation loss follows a script, to test early stopping."""

    def __init__(self, curve):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.curve, self.calls = curve, 0

    def forward(self, x):
        if not self.training:
            value = self.curve[min(self.calls, len(self.curve) - 1)]
            self.calls += 1
            return torch.full((len(x), 1), value) + 0 * self.w
        return self.w.expand(len(x), 1)


def test_early_stopping_stops_at_the_documented_epoch_and_restores_best():
    # best at epoch 3 (0.5); with patience 2 and min_delta 0.05 the 0.48 at epoch 5 is no
    # improvement, so training stops at the end of epoch 3 + 2 = 5
    curve = [1.0, 0.8, 0.5, 0.6, 0.48, 0.3, 0.2]
    model = Scripted(curve)
    x = torch.zeros(8, 1)
    split = data.Split(x, torch.zeros(8, 1))

    def loss_fn(out, y):
        return out.mean() if out.requires_grad else out.mean()

    stopper = EarlyStopping("val_loss", patience=2, min_delta=0.05)
    snapshots = {}

    class Record(EarlyStopping):
        def __init__(self):
            super().__init__("val_loss", patience=100)

        def on_epoch_end(self, trainer, logs):
            snapshots[logs["epoch"]] = trainer.model.w.detach().clone()

    trainer = Trainer(model, SGD(model.parameters(), lr=0.1), loss_fn, split, val=split,
                      batch_size=None, callbacks=[Record(), stopper], progress=False)
    trainer.fit(20)
    assert len(trainer.history.rows) == 5 and stopper.stopped_epoch == 5
    assert stopper.best_epoch == 3
    assert torch.equal(model.w.detach(), snapshots[3])


def test_training_digits_with_schedule_and_verdict(tmp_path):
    digits = data.digits(seed=0)
    scaler = data.Standardize().fit(digits.train.x)
    splits = [data.Split(scaler.transform(s.x), s.y) for s in
              (digits.train, digits.val, digits.test)]
    model = onn.MLP(64, [64], 10)
    opt = Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    trainer = Trainer(model, opt, torch.nn.functional.cross_entropy, splits[0], val=splits[1],
                      test=splits[2], scheduler=sched, progress=False)
    history = trainer.fit(5)
    assert history["val_error"][-1] < 0.1 and history["test_error"][-1] < 0.1
    assert history["train_loss"][0] > history["train_loss"][-1]
    assert trainer.verdict() in ("good fit", "overfitting")
    history.to_csv(str(tmp_path / "h.csv"))
    history.to_json(str(tmp_path / "h.json"))
    assert "val_error" in (tmp_path / "h.csv").read_text()


def _digits_trainer(opt_class, tmp_path=None, run=None, **kwargs):
    digits = data.digits(seed=0)
    torch.manual_seed(0)
    model = onn.MLP(64, [16], 10)
    return Trainer(model, opt_class(model.parameters(), **kwargs),
                   torch.nn.functional.cross_entropy, digits.train, batch_size=128,
                   progress=False, run=run,
                   checkpoint_dir=None if tmp_path is None else str(tmp_path / "ck"))


def test_an_optimizer_that_needs_a_closure_trains_as_torchs():
    """L-BFGS gets a closure that re-evaluates the batch's loss: ours and torch's, through the
    same loop, have the same history."""
    ours = _digits_trainer(optim.LBFGS, lr=0.1, max_iter=3).fit(2)
    theirs = _digits_trainer(torch.optim.LBFGS, lr=0.1, max_iter=3).fit(2)
    assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-6)
    assert ours["train_loss"][-1] < ours["train_loss"][0]


def _schedule_free_run(tmp_path=None, **fit):
    """Schedule-Free AdamW on the digits MLP in float64, full batch (one step an epoch),
    validated every epoch; checkpoints every 7 steps and at every epoch's end."""
    digits = data.digits(seed=0)
    torch.manual_seed(0)
    model = onn.MLP(64, [16], 10).double()
    opt = optim.ScheduleFreeAdamW(model.parameters(), lr=2e-2, warmup_steps=3)
    trainer = Trainer(model, opt, torch.nn.functional.cross_entropy,
                      data.Split(digits.train.x.double(), digits.train.y),
                      val=data.Split(digits.val.x.double(), digits.val.y), batch_size=None,
                      progress=False, checkpoint_every=7,
                      checkpoint_dir=None if tmp_path is None else str(tmp_path))
    return model, trainer, trainer.fit(**fit)


def test_schedule_free_steps_at_y_and_is_evaluated_and_left_at_x():
    """The authors' package (``schedulefree.AdamWScheduleFree``) driven by the loop its README
    prescribes (``optimizer.train()`` before training, ``optimizer.eval()`` before evaluating)
    is the reference: the Trainer's validation losses and final weights equal it. Evaluated at
    the training point y instead, the losses differ (checked, so the test can tell)."""
    import schedulefree

    model, _, history = _schedule_free_run(epochs=12)
    digits = data.digits(seed=0)
    x, y = digits.train.x.double(), digits.train.y
    xv, yv = digits.val.x.double(), digits.val.y
    torch.manual_seed(0)
    ref_model = onn.MLP(64, [16], 10).double()
    ref = schedulefree.AdamWScheduleFree(ref_model.parameters(), lr=2e-2, warmup_steps=3)
    loss = torch.nn.functional.cross_entropy
    at_x, at_y = [], []
    for _ in range(12):
        ref_model.train()
        ref.train()
        ref.zero_grad()
        loss(ref_model(x), y).backward()
        ref.step()
        ref_model.eval()
        with torch.no_grad():
            at_y.append(float(loss(ref_model(xv), yv)))
            ref.eval()
            at_x.append(float(loss(ref_model(xv), yv)))
    assert history["val_loss"] == pytest.approx(at_x, rel=1e-10)
    assert all(abs(a - b) > 1e-4 * b for a, b in zip(at_x[1:], at_y[1:], strict=True))
    for ours, theirs in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=0)


@pytest.mark.parametrize("drop_newest", [False, True], ids=["epoch-end", "mid-epoch"])
def test_schedule_free_resumes_to_the_same_bits(tmp_path, drop_newest):
    """A run stopped after 10 epochs resumes from its epoch-end checkpoint (written in
    evaluation mode, the model at x) or, with that one gone, from the mid-epoch one at step 7
    (in training mode) and ends as the run that never stopped."""
    straight, _, straight_history = _schedule_free_run(epochs=16)
    _schedule_free_run(tmp_path, epochs=10)
    if drop_newest:
        max(tmp_path.glob("ckpt-*.pt")).unlink()
    resumed, _, history = _schedule_free_run(tmp_path, epochs=16, resume=True)
    assert history.rows == straight_history.rows
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), straight.parameters(),
                                                 strict=True))


def test_keras_moving_average_is_written_into_the_model_at_the_end_of_fit():
    """As Keras' ``Model.fit`` calls ``finalize_variable_values`` after its last epoch: the
    model ends with the moving averages (each parameter's ``"ema"`` state after the last step),
    while training and its history are those of the run without ``use_ema``."""
    seen = []

    class Record(Callback):
        def on_train_end(self, trainer):
            seen.append([p.detach().clone() for p in trainer.model.parameters()])

    plain = _digits_trainer(Adam, lr=1e-2)
    averaged = _digits_trainer(Adam, lr=1e-2, use_ema=True, ema_momentum=0.9)
    averaged.callbacks.append(Record())
    assert averaged.fit(2).rows == plain.fit(2).rows
    raw = list(plain.model.parameters())
    for p, q, at_end in zip(averaged.model.parameters(), raw, seen[0], strict=True):
        assert torch.equal(p, averaged.optimizer.state[p]["ema"]) and torch.equal(p, at_end)
        assert not torch.equal(p, q)


def test_keras_loss_scaling_back_propagates_the_scaled_loss():
    """As Keras' ``Model.fit``: the loss is multiplied by ``loss_scale_factor`` before the
    backward pass and the step divides the gradients by it again; with a power of two both are
    exact, so the run equals the unscaled one bit for bit (unscaled, the step would divide the
    true gradients by 1024)."""
    scaled = _digits_trainer(SGD, lr=0.1, loss_scale_factor=1024.0)
    plain = _digits_trainer(SGD, lr=0.1)
    assert scaled.fit(2).rows == plain.fit(2).rows
    assert all(torch.equal(p, q) for p, q in zip(scaled.model.parameters(),
                                                 plain.model.parameters(), strict=True))


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    """Resuming a directory written by another run (another optimizer or learning rate) is
    refused, naming what differs, instead of loading its state into this one."""
    _digits_trainer(Adam, tmp_path, run={"optimizer": "adam", "lr": 1e-3}, lr=1e-3).fit(1)
    other = _digits_trainer(SGD, tmp_path, run={"optimizer": "sgd", "lr": 0.5}, lr=0.5)
    with pytest.raises(ValueError, match=r"another run: lr 0.001 \(now 0.5\), optimizer "
                                         r"'adam' \(now 'sgd'\)"):
        other.fit(2, resume=True)
    same = _digits_trainer(Adam, tmp_path, run={"optimizer": "adam", "lr": 1e-3}, lr=1e-3)
    assert len(same.fit(2, resume=True).rows) == 2


def test_a_new_run_refuses_a_directory_with_checkpoints(tmp_path):
    """A fresh run in a directory holding an earlier run's checkpoints would mix the two (and
    keeping the newest two would delete its own): refused, pointing at resume."""
    _digits_trainer(Adam, tmp_path, lr=1e-3).fit(1)
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run.*resume=True"):
        _digits_trainer(Adam, tmp_path, lr=1e-3).fit(1)


def test_nonfinite_loss_stops_with_a_message_or_is_skipped():
    x = torch.randn(16, 2)
    y = torch.randn(16, 1)
    split = data.Split(x, y)
    model = torch.nn.Linear(2, 1)

    def bad_loss(out, target):
        return ((out - target) ** 2).mean() * float("nan")

    trainer = Trainer(model, SGD(model.parameters(), lr=0.1), bad_loss, split, progress=False)
    with pytest.raises(FloatingPointError, match="loss is nan at epoch 1, batch 1"):
        trainer.fit(1)
    skipping = Trainer(model, SGD(model.parameters(), lr=0.1), bad_loss, split,
                       nonfinite="skip", batch_size=4, progress=False)
    before = model.weight.detach().clone()
    skipping.fit(1)
    assert skipping.skipped == 4 and torch.equal(model.weight, before)


def test_bad_arguments():
    model = torch.nn.Linear(2, 1)
    split = data.Split(torch.randn(4, 2), torch.randn(4, 1))
    opt = SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="batch_size=0"):
        Trainer(model, opt, torch.nn.functional.mse_loss, split, batch_size=0)
    with pytest.raises(ValueError, match="epochs=0"):
        Trainer(model, opt, torch.nn.functional.mse_loss, split, progress=False).fit(0)
    with pytest.raises(ValueError, match="patience=-1"):
        EarlyStopping(patience=-1)
    # a typo in a monitored metric: at construction (the plateau's), at the first epoch's end
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(ValueError, match="plateau_metric: unknown metric 'val_los': did you "
                                         "mean 'val_loss'\\? choose one of train_loss, val_loss "):
        Trainer(model, opt, torch.nn.functional.mse_loss, split, val=split, scheduler=plateau,
                plateau_metric="val_los")
    with pytest.raises(ValueError, match="choose one of train_loss \\(val_ and test_ metrics "
                                         "need the val and test splits\\)"):
        Trainer(model, opt, torch.nn.functional.mse_loss, split, scheduler=plateau)
    trainer = Trainer(model, opt, torch.nn.functional.mse_loss, split, val=split,
                      progress=False, callbacks=[EarlyStopping(monitor="val_los")])
    with pytest.raises(KeyError, match="did you mean 'val_loss'"):
        trainer.fit(1)
