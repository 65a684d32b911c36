"""Keras 3's own optimizer tests, run against optimlab's keras flavor.

Ported from ``keras/src/optimizers/*_test.py`` of the Keras wheel in the test environment
(Keras 3.15.1): every golden value, expected number and tolerance is Keras'; each test's
docstring names the Keras file and test. Keras' argument names map to ours: ``learning_rate`` →
``lr``, ``beta_1, beta_2`` → ``betas``, ``epsilon`` → ``eps``, RMSprop's ``rho`` → ``alpha``
(Adadelta keeps ``rho``), Ftrl's ``learning_rate_power`` and ``l1/l2/l2_shrinkage_regularization
_strength`` → ``lr_power``, ``l1``, ``l2``, ``l2_shrinkage``; ``exclude_from_weight_decay`` is
a param group with ``weight_decay=0``; ``optimizer.apply_gradients`` is setting ``p.grad`` and
calling ``step()``; Keras' ``_clip_gradients`` is read from ``p.grad`` after ``step()``
(optimlab clips the gradients in place, as ``torch.nn.utils.clip_grad_norm_``). Keras'
``Variable`` dtypes are kept: float64 where Keras builds it from ``np.ones`` (float64), float32
otherwise; gradients are cast to the variable's dtype as Keras' ``update_step`` does.

Left out, with the reason:

* ``test_config`` of every optimizer, ``optimizer_test.test_optimizer_auto_naming``: the
  get_config/from_config serialization and naming of Keras objects.
* ``nadam_test.test_build_with_empty_var_list``: the dtype of Keras' ``_u_product`` variable.
* ``optimizer_test.test_constraints_are_applied``: Keras ``Variable.constraint``, which optimlab
  parameters do not have (torch uses parametrizations, outside the optimizer).
* ``optimizer_test.test_set_weights``, ``test_setting_lr_to_callable_untracks_lr_var``: Keras'
  list of optimizer variables; torch's ``state_dict``/``load_state_dict`` is the equivalent,
  tested in test_generic.py (round trip, bit-exact resume).
* ``optimizer_test.test_callable_learning_rate``: a callable learning rate is Keras' schedule
  mechanism; optimlab's learning rate is a number driven by ``torch.optim.lr_scheduler``.
* ``optimizer_test.test_overwrite_with_gradient`` and ``..._with_gradient_accumulation``: Keras'
  ``Variable.overwrite_with_gradient`` (float8 scaling factors), not an optimizer concept here.
* ``optimizer_test.test_tf_checkpointing``, ``test_mixed_with_tf_variables``,
  ``adam_test.test_clipnorm_indexed_slices``: TensorFlow only (skipped by Keras on torch too).
* The ``lion``/``adafactor`` cases of the parametrized accumulation and pickling tests, and the
  test files of optimizers optimlab does not have (Lion, Adafactor, Lamb, Muon,
  ScheduleFreeAdamW, LossScaleOptimizer, MultiOptimizer, sparse IndexedSlices updates).
* Parts of ported tests: ``test_empty_gradients``' "No gradients provided for any variable"
  error and its warning (torch's semantics hold: a parameter whose ``.grad`` is None is skipped
  silently, and a step without gradients does nothing), and ``optimizers.get(None)``.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import optimlab.optim as oo

os.environ.setdefault("KERAS_BACKEND", "torch")

assert_allclose = np.testing.assert_allclose


def keras_flavor(cls, params, **kwargs) -> oo.Optimizer:
    return cls(params, flavor="keras", **kwargs)


def apply_gradients(opt: oo.Optimizer, pairs) -> None:
    """Keras' ``optimizer.apply_gradients(zip(grads, vars))``: gradients cast to the
    variable's dtype (as Keras' ``update_step``), then one ``step()``."""
    for g, p in pairs:
        p.grad = None if g is None else torch.as_tensor(g).to(p.dtype).expand_as(p).clone()
    opt.step()


def values(p) -> np.ndarray:
    return p.detach().numpy()


# --------------------------------------------------------------------------- golden values
# Keras' ``grads = ops.arange(0.1, 1.1, 0.1)`` and ``first_grads = ops.full((10,), 0.01)`` on
# the torch backend (float32); ftrl_test uses numpy's float64 ``np.arange``/``np.full``.
GRADS32 = torch.arange(0.1, 1.1, 0.1, dtype=torch.float32)
FIRST32 = torch.full((10,), 0.01, dtype=torch.float32)
GRADS64 = torch.from_numpy(np.arange(0.1, 1.1, 0.1))
FIRST64 = torch.from_numpy(np.full((10,), 0.01))

# name → (class, hyper-parameters, dtype of Keras' x, first grads, grads, golden), copied
# from each file's test_correctness_with_golden.
GOLDEN = {
    # sgd_test.py: SGD(nesterov=True); x = Variable(np.ones([10])) is float64
    "sgd": (oo.SGD, {"nesterov": True}, torch.float64, FIRST32, GRADS32, np.array(
        [[0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999,
          0.9999, 0.9999], [0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939,
          0.9929, 0.9919, 0.9909, 0.9899], [0.9979, 0.9959, 0.9939, 0.9919,
          0.9899, 0.9879, 0.9859, 0.9839, 0.9819, 0.9799], [0.9969, 0.9939,
          0.9909, 0.9879, 0.9849, 0.9819, 0.9789, 0.9759, 0.9729, 0.9699],
         [0.9959, 0.9919, 0.9879, 0.9839, 0.9799, 0.9759, 0.9719, 0.9679,
          0.9639, 0.9599]])),
    # adam_test.py: Adam(amsgrad=True)
    "adam": (oo.Adam, {"amsgrad": True}, torch.float32, FIRST32, GRADS32, np.tile(
        [[0.999], [0.9982], [0.9974], [0.9965], [0.9955]], (1, 10))),
    # adamw_test.py: AdamW(learning_rate=1.0, weight_decay=0.5, epsilon=2)
    "adamw": (oo.AdamW, {"lr": 1.0, "weight_decay": 0.5, "eps": 2}, torch.float32, FIRST32,
              GRADS32, np.array(
        [[0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998],
         [0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417, 0.2405, 0.2394, 0.2382],
         [0.1223, 0.1198, 0.1174, 0.1149, 0.1124, 0.11, 0.1075, 0.1051, 0.1027, 0.1003],
         [0.0586, 0.0549, 0.0512, 0.0475, 0.0439, 0.0402, 0.0366, 0.033, 0.0294, 0.0258],
         [0.0263, 0.0215, 0.0167, 0.012, 0.0073, 0.0026, -0.0021, -0.0067, -0.0113, -0.0159]])),
    # adagrad_test.py: Adagrad(learning_rate=0.2, initial_accumulator_value=0.3, epsilon=1e-6)
    "adagrad": (oo.Adagrad, {"lr": 0.2, "initial_accumulator_value": 0.3, "eps": 1e-6},
                torch.float64, FIRST32, GRADS32, np.array(
        [[0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963],
         [0.9604, 0.9278, 0.9003, 0.8784, 0.8615, 0.8487, 0.8388, 0.8313, 0.8255, 0.8209],
         [0.9251, 0.8629, 0.8137, 0.7768, 0.7497, 0.7298, 0.7151, 0.704, 0.6956, 0.6891],
         [0.8903, 0.8012, 0.7342, 0.6862, 0.6521, 0.6277, 0.6099, 0.5967, 0.5867, 0.579],
         [0.856, 0.7422, 0.6604, 0.6037, 0.5644, 0.5367, 0.5168, 0.5021, 0.491, 0.4825]])),
    # adadelta_test.py: Adadelta(learning_rate=1.0, rho=0.8, epsilon=1e-6)
    "adadelta": (oo.Adadelta, {"lr": 1.0, "rho": 0.8, "eps": 1e-6}, torch.float64, FIRST32,
                 GRADS32, np.tile([[0.9978], [0.9947], [0.9915], [0.9882], [0.9849]], (1, 10))),
    # rmsprop_test.py: RMSprop(centered=True)
    "rmsprop": (oo.RMSprop, {"centered": True}, torch.float64, FIRST32, GRADS32, np.tile(
        [[0.9967], [0.9933], [0.9908], [0.9885], [0.9864]], (1, 10))),
    # adamax_test.py: Adamax(learning_rate=0.2, beta_1=0.85, beta_2=0.95, epsilon=1e-6)
    "adamax": (oo.Adamax, {"lr": 0.2, "betas": (0.85, 0.95), "eps": 1e-6}, torch.float32,
               FIRST32, GRADS32, np.array(
        [[0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8],
         [0.6827, 0.6873, 0.6888, 0.6896, 0.6901, 0.6904, 0.6906, 0.6908, 0.6909, 0.691],
         [0.5333, 0.5407, 0.5431, 0.5444, 0.5451, 0.5456, 0.546, 0.5462, 0.5464, 0.5466],
         [0.368, 0.3773, 0.3804, 0.382, 0.3829, 0.3835, 0.384, 0.3843, 0.3846, 0.3848],
         [0.1933, 0.204, 0.2076, 0.2094, 0.2105, 0.2112, 0.2117, 0.2121, 0.2124, 0.2126]])),
    # nadam_test.py: Nadam(learning_rate=0.5, beta_1=0.5, beta_2=0.67, epsilon=1e-5)
    "nadam": (oo.Nadam, {"lr": 0.5, "betas": (0.5, 0.67), "eps": 1e-5}, torch.float32, FIRST32,
              GRADS32, np.array(
        [[0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281],
         [-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718,
          -0.1717],
         [-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085,
          -0.7084],
         [-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23,
          -1.2299],
         [-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455,
          -1.7454]])),
    # ftrl_test.py: Ftrl(learning_rate=0.05, learning_rate_power=-0.2,
    # initial_accumulator_value=0.4, l1_regularization_strength=0.05,
    # l2_regularization_strength=0.15, l2_shrinkage_regularization_strength=0.01, beta=0.3)
    "ftrl": (oo.Ftrl, {"lr": 0.05, "lr_power": -0.2, "initial_accumulator_value": 0.4,
                       "l1": 0.05, "l2": 0.15, "l2_shrinkage": 0.01, "beta": 0.3},
             torch.float64, FIRST64, GRADS64, np.array(
        [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
         [-0.0034, -0.0077, -0.0118, -0.0157, -0.0194, -0.023, -0.0263, -0.0294, -0.0325,
          -0.0354],
         [-0.0078, -0.0162, -0.0242, -0.0317, -0.0387, -0.0454, -0.0516, -0.0575, -0.0631,
          -0.0685],
         [-0.0121, -0.0246, -0.0363, -0.0472, -0.0573, -0.0668, -0.0757, -0.0842, -0.0922,
          -0.0999],
         [-0.0164, -0.0328, -0.0481, -0.0623, -0.0753, -0.0875, -0.099, -0.1098, -0.1201,
          -0.1299]])),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_correctness_with_golden(name):
    """keras/src/optimizers/<name>_test.py, test_correctness_with_golden: one step with
    ``first_grads``, then five with ``grads``; x before each of the five equals Keras' golden
    row (rtol=atol=5e-4, Keras' tolerance)."""
    cls, hp, dtype, first, grads, golden = GOLDEN[name]
    x = torch.nn.Parameter(torch.ones(10, dtype=dtype))
    opt = keras_flavor(cls, [x], **hp)
    apply_gradients(opt, [(first, x)])
    for i in range(5):
        assert_allclose(values(x), golden[i], rtol=5e-4, atol=5e-4)
        apply_gradients(opt, [(grads, x)])


# name → (class, expected vars) from each file's test_single_step: learning_rate=0.5,
# grads [1, 6, 7, 2] on vars [1, 2, 3, 4] (float32); rtol=atol=1e-4.
SINGLE_STEP = {
    "sgd": (oo.SGD, [0.5, -1.0, -0.5, 3.0]),
    "adam": (oo.Adam, [0.5, 1.5, 2.5, 3.5]),
    "adamw": (oo.AdamW, [0.4980, 1.4960, 2.494, 3.492]),
    "adagrad": (oo.Adagrad, [0.5233, 1.5007, 2.5005, 3.5061]),
    "adadelta": (oo.Adadelta, [0.9993, 1.9993, 2.9993, 3.9993]),
    "rmsprop": (oo.RMSprop, [-0.5811, 0.4189, 1.4189, 2.4189]),
    "adamax": (oo.Adamax, [0.5, 1.5, 2.5, 3.5]),
    "nadam": (oo.Nadam, [0.4686, 1.4686, 2.4686, 3.4686]),
    "ftrl": (oo.Ftrl, [0.2218, 1.3954, 2.3651, 2.8814]),
}


@pytest.mark.parametrize("name", list(SINGLE_STEP))
def test_single_step(name):
    """keras/src/optimizers/<name>_test.py, test_single_step (its values; sgd_test's count of
    Keras optimizer variables is left out)."""
    cls, expected = SINGLE_STEP[name]
    var = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    opt = keras_flavor(cls, [var], lr=0.5)
    grads = np.array([1.0, 6.0, 7.0, 2.0])  # ftrl_test passes numpy float64, cast by Keras
    apply_gradients(opt, [(grads, var)])
    assert_allclose(values(var), expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- weight decay
WEIGHT_DECAY = {"sgd": oo.SGD, "adam": oo.Adam, "adamw": oo.AdamW, "adagrad": oo.Adagrad,
                "adadelta": oo.Adadelta, "rmsprop": oo.RMSprop, "adamax": oo.Adamax,
                "nadam": oo.Nadam}


@pytest.mark.parametrize("name", list(WEIGHT_DECAY))
def test_weight_decay(name):
    """keras/src/optimizers/<name>_test.py, test_weight_decay: decoupled decay 0.004 at
    learning rate 1 over three optimizers sharing var1; var2 (excluded by name) and var3
    (excluded by list) are param groups with ``weight_decay=0``."""
    cls = WEIGHT_DECAY[name]
    grads = torch.zeros(())
    var1, var2, var3 = (torch.nn.Parameter(torch.tensor(2.0)) for _ in range(3))
    optimizer_1 = keras_flavor(cls, [var1], lr=1.0, weight_decay=0.004)
    apply_gradients(optimizer_1, [(grads, var1)])

    optimizer_2 = keras_flavor(cls, [{"params": [var1]}, {"params": [var2], "weight_decay": 0.0}],
                               lr=1.0, weight_decay=0.004)
    apply_gradients(optimizer_2, [(grads, var1), (grads, var2)])

    optimizer_3 = keras_flavor(cls, [{"params": [var1]}, {"params": [var3], "weight_decay": 0.0}],
                               lr=1.0, weight_decay=0.004)
    apply_gradients(optimizer_3, [(grads, var1), (grads, var3)])

    np.testing.assert_almost_equal(values(var1), 1.9760959, decimal=6)
    np.testing.assert_almost_equal(values(var2), 2.0, decimal=6)
    np.testing.assert_almost_equal(values(var3), 2.0, decimal=6)


# --------------------------------------------------------------------------------- clipping
ALL = {**WEIGHT_DECAY, "ftrl": oo.Ftrl}


def clipped(cls, **option) -> np.ndarray:
    """Keras' ``optimizer._clip_gradients([np.array([100.0, 100.0])])`` (float64)."""
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = keras_flavor(cls, [p], **option)
    apply_gradients(opt, [(np.array([100.0, 100.0]), p)])
    return p.grad.numpy()


@pytest.mark.parametrize("name", list(ALL))
def test_clip_norm(name):
    """keras/src/optimizers/<name>_test.py and optimizer_test.py, test_clip_norm."""
    assert_allclose(clipped(ALL[name], clipnorm=1), [2**0.5 / 2, 2**0.5 / 2],
                    rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(ALL))
def test_clip_value(name):
    """keras/src/optimizers/<name>_test.py and optimizer_test.py, test_clip_value."""
    assert_allclose(clipped(ALL[name], clipvalue=1), [1.0, 1.0], rtol=1e-6, atol=1e-6)


def test_global_clip_norm():
    """keras/src/optimizers/optimizer_test.py, test_global_clip_norm."""
    grad = np.array([50.0, 100.0], dtype="float32")
    p = torch.nn.Parameter(torch.zeros(2))
    opt = keras_flavor(oo.SGD, [p], global_clipnorm=1)
    apply_gradients(opt, [(grad, p)])
    assert_allclose(p.grad.numpy(), grad / np.linalg.norm(grad), rtol=1e-6, atol=1e-6)


def test_clip_args():
    """keras/src/optimizers/optimizer_test.py, test_clip_args (optimlab's message)."""
    p = torch.nn.Parameter(torch.zeros(2))
    assert keras_flavor(oo.SGD, [p], lr=1.0, clipnorm=0.1).clipnorm == 0.1
    assert keras_flavor(oo.SGD, [p], lr=1.0, clipvalue=0.1).clipvalue == 0.1
    assert keras_flavor(oo.SGD, [p], lr=1.0, global_clipnorm=0.1).global_clipnorm == 0.1
    for other in ({"clipvalue": 0.1}, {"global_clipnorm": 0.1}):
        with pytest.raises(ValueError, match="at most one of clipnorm, clipvalue, "
                                             "global_clipnorm"):
            keras_flavor(oo.SGD, [p], lr=1.0, clipnorm=0.1, **other)


# ----------------------------------------------------------------------- argument checks
def test_invalid_momentum():
    """keras/src/optimizers/sgd_test.py, test_invalid_momentum: momentum outside [0, 1]."""
    p = torch.nn.Parameter(torch.zeros(2))
    for momentum in (-1.0, 2.0):
        with pytest.raises(ValueError, match=r"momentum=.* is out of range: allowed \[0, 1\]"):
            keras_flavor(oo.SGD, [p], momentum=momentum)
    keras_flavor(oo.SGD, [p], momentum=1.0)  # Keras' bounds are inclusive
    oo.SGD([p], momentum=2.0)  # torch allows any momentum >= 0


def test_weight_decay_is_none():
    """keras/src/optimizers/adamw_test.py, test_weight_decay_is_none."""
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="weight_decay=None"):
        keras_flavor(oo.AdamW, [p], lr=1.0, weight_decay=None)


@pytest.mark.parametrize("key, value", [
    ("initial_accumulator_value", -0.1),  # test_invalid_initial_accumulator_value
    ("lr_power", 0.1),  # test_invalid_learning_rate_power
    ("l1", -0.1),  # test_invalid_l1_regularization_strength
    ("l2", -0.1),  # test_invalid_l2_regularization_strength
    ("l2_shrinkage", -0.1),  # test_invalid_l2_shrinkage_regularization_strength
])
def test_ftrl_invalid_arguments(key, value):
    """keras/src/optimizers/ftrl_test.py, test_invalid_*: the value Keras refuses raises a
    ValueError naming the argument and the value (optimlab's message)."""
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=rf"^{key}={value} is out of range"):
        keras_flavor(oo.Ftrl, [p], **{key: value})


# --------------------------------------------------------------------------------------- EMA
def test_ema():
    """keras/src/optimizers/optimizer_test.py, test_ema: SGD(learning_rate=1.0, use_ema=True,
    ema_momentum=0.9, ema_overwrite_frequency=3)."""
    v = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [5.0, 6.0]]))
    grads = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    optimizer = keras_flavor(oo.SGD, [v], lr=1.0, use_ema=True, ema_momentum=0.9,
                             ema_overwrite_frequency=3)
    apply_gradients(optimizer, [(grads, v)])
    assert_allclose(values(v), [[2.0, 3.0], [4.0, 5.0]], rtol=1e-6, atol=1e-6)
    assert_allclose(optimizer.state[v]["ema"].numpy(), [[2.0, 3.0], [4.0, 5.0]],
                    rtol=1e-6, atol=1e-6)  # initialized after first step
    apply_gradients(optimizer, [(grads, v)])
    assert_allclose(values(v), [[1.0, 2.0], [3.0, 4.0]], rtol=1e-6, atol=1e-6)
    assert_allclose(optimizer.state[v]["ema"].numpy(), [[1.9, 2.9], [3.9, 4.9]],
                    rtol=1e-6, atol=1e-6)
    apply_gradients(optimizer, [(grads, v)])
    # variables were overwritten with the EMA
    assert_allclose(values(v), [[1.71, 2.71], [3.71, 4.71]], rtol=1e-6, atol=1e-6)
    assert_allclose(optimizer.state[v]["ema"].numpy(), [[1.71, 2.71], [3.71, 4.71]],
                    rtol=1e-6, atol=1e-6)


def fit(model: torch.nn.Module, optimizer: oo.Optimizer, x, y, epochs: int = 1) -> None:
    """Keras' ``model.fit(x, y, batch_size=len(x), epochs=epochs)`` with the mean squared
    error: one step per epoch, then ``finalize_variable_values`` (Keras' fit does it)."""
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    optimizer.finalize_variable_values()


def test_ema_with_model_fit():
    """keras/src/optimizers/optimizer_test.py, test_ema_with_model_fit: Dense(2, ones, no
    bias) fitted on x=1, y=0 for 2 epochs by SGD(0.1, use_ema=True, ema_momentum=0.9)."""
    model = torch.nn.Linear(1, 2, bias=False)
    torch.nn.init.ones_(model.weight)
    optimizer = keras_flavor(oo.SGD, model.parameters(), lr=0.1, use_ema=True,
                             ema_momentum=0.9)
    fit(model, optimizer, torch.ones(1, 1), torch.zeros(1, 2), epochs=2)
    assert_allclose(optimizer.state[model.weight]["ema"].numpy().T, [[0.891, 0.891]],
                    rtol=1e-6, atol=1e-5)
    assert_allclose(values(model.weight).T, [[0.891, 0.891]], rtol=1e-6, atol=1e-5)


def test_adam_ema():
    """keras/src/optimizers/adam_test.py, test_ema: the EMA starts at the first updated value,
    then 0.9·v1 + 0.1·v2; finalize writes it into the variable; after one fit() of a Dense(10)
    the weights equal their EMA."""
    optimizer = keras_flavor(oo.Adam, [var := torch.nn.Parameter(torch.tensor([1.0, 2.0]))],
                             lr=1.0, use_ema=True, ema_momentum=0.9)
    grads = torch.tensor([0.1, 0.2])
    apply_gradients(optimizer, [(grads, var)])
    v1 = values(var).copy()
    assert_allclose(optimizer.state[var]["ema"].numpy(), v1, rtol=1e-6, atol=1e-6)
    apply_gradients(optimizer, [(grads, var)])
    v2 = values(var).copy()
    expected_ema = 0.9 * v1 + 0.1 * v2
    assert_allclose(optimizer.state[var]["ema"].numpy(), expected_ema, rtol=1e-6, atol=1e-6)
    optimizer.finalize_variable_values()
    assert_allclose(values(var), expected_ema, rtol=1e-6, atol=1e-6)

    model = torch.nn.Linear(5, 10, bias=False)
    torch.nn.init.ones_(model.weight)
    optimizer = keras_flavor(oo.Adam, model.parameters(), use_ema=True, ema_momentum=0.9)
    fit(model, optimizer, torch.ones(1, 5), torch.zeros(1, 10))
    assert_allclose(values(model.weight), optimizer.state[model.weight]["ema"].numpy(),
                    rtol=1e-6, atol=1e-6)


def test_ema_overwrite_frequency():
    """keras/src/optimizers/adam_test.py, test_ema_overwrite_frequency: with frequency 2 the
    variable is the plain Adam value after step 1 and the EMA after step 2."""
    var = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    var_no_ema = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    optimizer = keras_flavor(oo.Adam, [var], lr=1.0, use_ema=True, ema_momentum=0.9,
                             ema_overwrite_frequency=2)
    optimizer_no_ema = keras_flavor(oo.Adam, [var_no_ema], lr=1.0)
    grads = torch.tensor([0.1, 0.2])

    apply_gradients(optimizer, [(grads, var)])
    apply_gradients(optimizer_no_ema, [(grads, var_no_ema)])
    v1 = values(var_no_ema).copy()
    assert_allclose(values(var), v1, rtol=1e-6, atol=1e-6)  # not overwritten yet

    apply_gradients(optimizer, [(grads, var)])
    apply_gradients(optimizer_no_ema, [(grads, var_no_ema)])
    v2 = values(var_no_ema).copy()
    expected_ema = 0.9 * v1 + 0.1 * v2
    assert_allclose(values(var), expected_ema, rtol=1e-6, atol=1e-6)  # overwritten
    assert_allclose(optimizer.state[var]["ema"].numpy(), expected_ema, rtol=1e-6, atol=1e-6)


# -------------------------------------------------------------- accumulation, loss scaling
def test_iterations_counter():
    """keras/src/optimizers/optimizer_test.py, test_iterations_counter."""
    v = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    grads = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    optimizer = keras_flavor(oo.Adam, [v], lr=1.0)
    assert optimizer.iterations == 0
    apply_gradients(optimizer, [(grads, v)])
    assert optimizer.iterations == 1
    apply_gradients(optimizer, [(grads, v)])
    assert optimizer.iterations == 2


def test_gradient_accumulation():
    """keras/src/optimizers/optimizer_test.py, test_gradient_accumulation: SGD(1.0) with 3
    accumulation steps; the accumulator is ``state[p]["accumulated_grad"]``, Keras'
    ``_iterations`` the number of ``step()`` calls, ``iterations`` the updates."""
    v = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    grads = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    optimizer = keras_flavor(oo.SGD, [v], lr=1.0, gradient_accumulation_steps=3)
    assert optimizer.gradient_accumulation_steps == 3
    expected = [  # (v, accumulator, iterations) after each call
        ([[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]], 0),
        ([[1.0, 2.0], [3.0, 4.0]], [[2.0, 2.0], [2.0, 2.0]], 0),
        ([[0.0, 1.0], [2.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]], 1),
        ([[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]], 1),
    ]
    for value, accumulated, iterations in expected:
        apply_gradients(optimizer, [(grads, v)])
        assert_allclose(values(v), value, rtol=1e-6, atol=1e-6)
        assert_allclose(optimizer.state[v]["accumulated_grad"].numpy(), accumulated,
                        rtol=1e-6, atol=1e-6)
        assert optimizer.iterations == iterations


@pytest.mark.parametrize("name", list(ALL))
def test_gradient_accumulation_with_weight_decay(name):
    """keras/src/optimizers/optimizer_test.py, test_gradient_accumulation_with_weigth_decay:
    weight decay 0.05, the mean of 3 gradients in one step equals 3 accumulated micro-steps,
    over 8 updates (Keras' default tolerance 1e-6)."""
    cls = ALL[name]
    variable1 = torch.nn.Parameter(torch.tensor([[0.9], [0.5]]))
    variable3 = torch.nn.Parameter(torch.tensor([[0.9], [0.5]]))
    optimizer1 = keras_flavor(cls, [variable1], weight_decay=0.05)
    optimizer3 = keras_flavor(cls, [variable3], weight_decay=0.05, gradient_accumulation_steps=3)
    rng = np.random.default_rng(0)
    for _ in range(8):
        grads3 = rng.random([3, 2, 1]).astype("float32")
        apply_gradients(optimizer1, [(grads3.mean(axis=0), variable1)])
        for batch in range(3):
            apply_gradients(optimizer3, [(grads3[batch], variable3)])
    assert_allclose(values(variable1), values(variable3), rtol=1e-6, atol=1e-6)


def test_static_loss_scaling():
    """keras/src/optimizers/optimizer_test.py, test_static_loss_scaling."""
    v = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    grads = torch.tensor([[1.0, 2.0], [3.0, 4.0]]) * 1024.0
    optimizer = keras_flavor(oo.SGD, [v], lr=1.0, loss_scale_factor=1024.0)
    apply_gradients(optimizer, [(grads, v)])
    assert optimizer.scale_loss(1.0) == 1024.0
    assert_allclose(values(v), [[0.0, 0.0], [0.0, 0.0]], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------ the rest
def test_empty_gradients():
    """keras/src/optimizers/optimizer_test.py, test_empty_gradients, the filtering part: a
    variable without gradient is left alone while the other is updated."""
    v = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [5.0, 6.0]]))
    v2 = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [5.0, 6.0]]))
    grads2 = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    optimizer = keras_flavor(oo.SGD, [v, v2], lr=1.0)
    apply_gradients(optimizer, [(None, v), (grads2, v2)])
    assert_allclose(values(v), [[3.0, 4.0], [5.0, 6.0]], rtol=1e-6, atol=1e-6)
    assert_allclose(values(v2), [[2.0, 3.0], [4.0, 5.0]], rtol=1e-6, atol=1e-6)


def test_get_method():
    """keras/src/optimizers/optimizer_test.py, test_get_method (``get(None)`` left out)."""
    p = torch.nn.Parameter(torch.zeros(2))
    assert isinstance(oo.get("sgd", [p], flavor="keras"), oo.SGD)
    assert isinstance(oo.get("adamw", [p], flavor="keras"), oo.AdamW)
    with pytest.raises(ValueError, match="typo"):
        oo.get("typo", [p], flavor="keras")


@pytest.mark.parametrize("name", list(ALL))
def test_pickleable_optimizers(name):
    """keras/src/optimizers/optimizer_test.py, test_pickleable_optimizers: the configuration
    (param groups' hyper-parameters, options) survives pickling."""
    optimizer = keras_flavor(ALL[name], [torch.nn.Parameter(torch.zeros(2))])
    reloaded = pickle.loads(pickle.dumps(optimizer))

    def config(opt, keys):  # torch's __setstate__ adds its own flags (differentiable, ...)
        groups = [{k: g[k] for k in keys} for g in [*opt.param_groups, opt.defaults]]
        return groups, opt.flavor, opt.use_ema, opt.ema_momentum, opt.loss_scale_factor

    keys = list(optimizer.defaults)
    assert config(reloaded, keys) == config(optimizer, keys)


# ---------------------------------------------------------------- beyond Keras' own tests
def keras_run(cls_name: str, keras_kwargs: dict, ours: type, our_kwargs: dict,
              flavor: str = "keras", steps: int = 12):
    """Train two parameters in float64 by Keras' optimizer (torch backend) and by ours on the
    same gradients; returns (keras values, ours) after every step and after finalizing."""
    import keras

    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        gen = torch.Generator().manual_seed(0)
        init = [torch.randn(3, 4, generator=gen, dtype=torch.float64),
                torch.randn(4, generator=gen, dtype=torch.float64)]
        variables = [keras.Variable(p.numpy(), dtype="float64") for p in init]
        reference = getattr(keras.optimizers, cls_name)(**keras_kwargs)
        params = [torch.nn.Parameter(p.clone()) for p in init]
        opt = ours(params, flavor=flavor, **our_kwargs)
        trace_keras, trace_ours = [], []
        for _ in range(steps):
            grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in init]
            reference.apply_gradients(zip([g.clone() for g in grads], variables, strict=True))
            apply_gradients(opt, zip(grads, params, strict=True))
            trace_keras.append(torch.cat([v.value.detach().flatten() for v in variables]))
            trace_ours.append(torch.cat([p.detach().flatten() for p in params]))
        reference.finalize_variable_values(variables)
        opt.finalize_variable_values()
        trace_keras.append(torch.cat([v.value.detach().flatten() for v in variables]))
        trace_ours.append(torch.cat([p.detach().flatten() for p in params]))
        return torch.stack(trace_keras), torch.stack(trace_ours)
    finally:
        keras.config.set_floatx(old)


EMA_OPTIONS = [
    {"use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 3},
    {"use_ema": True, "ema_momentum": 0.8, "ema_overwrite_frequency": 2,
     "gradient_accumulation_steps": 3},
    {"use_ema": True, "gradient_accumulation_steps": 2, "loss_scale_factor": 8.0,
     "clipnorm": 0.5},
]


@pytest.mark.parametrize("options", EMA_OPTIONS, ids=["ema", "ema-accumulation", "scaled"])
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_base_options_equal_keras(name, options):
    """The EMA (also while accumulating, where Keras averages at every call), its overwrites,
    finalize_variable_values and loss scaling equal Keras 3 itself in float64."""
    hp = {"learning_rate": 0.1, "momentum": 0.5} if name == "SGD" else {"learning_rate": 0.1}
    ours = {"lr": 0.1, "momentum": 0.5} if name == "SGD" else {"lr": 0.1}
    expected, actual = keras_run(name, {**hp, **options}, getattr(oo, name), {**ours, **options})
    err = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert err < 1e-12, f"relative error {err:.3g} vs Keras"


def test_ema_in_torch_flavor():
    """The base options are not Keras-only: torch-flavored SGD with an EMA, by hand."""
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = oo.SGD([p], lr=0.5, use_ema=True, ema_momentum=0.75)
    averages = []
    for _ in range(3):
        apply_gradients(opt, [(torch.tensor([1.0]), p)])
        averages.append(opt.state[p]["ema"].item())
    # p: 0.5, 0, -0.5; the average starts at the first updated value
    assert averages == [0.5, 0.75 * 0.5, 0.75 * 0.375 + 0.25 * -0.5]
    opt.finalize_variable_values()
    assert p.item() == averages[-1]


def test_ema_state_dict_resume_is_bit_exact():
    """The averages and the update count are in the state dict: stopping mid-accumulation and
    resuming in a fresh optimizer gives the bits of one uninterrupted run."""
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, generator=gen, dtype=torch.float64) for _ in range(14)]
    options = {"lr": 0.1, "use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 2,
               "gradient_accumulation_steps": 2}

    straight = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    opt = keras_flavor(oo.Adam, [straight], **options)
    for g in grads:
        apply_gradients(opt, [(g, straight)])

    first = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    opt = keras_flavor(oo.Adam, [first], **options)
    for g in grads[:7]:
        apply_gradients(opt, [(g, first)])
    saved = opt.state_dict()
    resumed = torch.nn.Parameter(first.detach().clone())
    opt = keras_flavor(oo.Adam, [resumed], **options)
    opt.load_state_dict(saved)
    for g in grads[7:]:
        apply_gradients(opt, [(g, resumed)])
    assert torch.equal(resumed, straight)


@pytest.mark.parametrize("kwargs, message", [
    ({"use_ema": True, "ema_momentum": 1.5}, r"ema_momentum=1.5 is out of range: allowed \[0, 1\]"),
    ({"use_ema": True, "ema_overwrite_frequency": 2.5}, "ema_overwrite_frequency=2.5"),
    ({"use_ema": True, "ema_overwrite_frequency": -1}, "ema_overwrite_frequency=-1"),
    ({"use_ema": "yes"}, "use_ema='yes'"),
    ({"loss_scale_factor": 0.0}, "loss_scale_factor=0.0"),
    ({"loss_scale_factor": float("inf")}, "loss_scale_factor=inf"),
])
@pytest.mark.parametrize("flavor", ["keras", "torch"])
def test_base_option_checks(kwargs, message, flavor):
    """Keras' checks of its base options (base_optimizer.py, BaseOptimizer.__init__), in both
    flavors; a loss scale must also be a positive finite number."""
    with pytest.raises(ValueError, match=message):
        oo.Adam([torch.nn.Parameter(torch.zeros(2))], flavor=flavor, **kwargs)
    # as Keras: unchecked without use_ema, and 0 means "no overwrite"
    oo.Adam([torch.nn.Parameter(torch.zeros(2))], flavor=flavor, ema_momentum=1.5)
    oo.Adam([torch.nn.Parameter(torch.zeros(2))], flavor=flavor, use_ema=True,
            ema_overwrite_frequency=0)
