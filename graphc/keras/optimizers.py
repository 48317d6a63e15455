"""Optimizers and learning-rate schedules with Keras 3's update rules, written as graph nodes.

``optimizer.updates(params, grads)`` returns ``(variable, new value)`` pairs for one training step -- every
parameter, every slot and the iteration counter -- which ``gc.function(..., updates=...)`` applies together
after computing all new values from the old ones. A step does what Keras' ``apply`` does: clip the gradients
(``clipnorm``, ``clipvalue`` or ``global_clipnorm``), decay the weights (``weight_decay``: w -= w * wd * lr),
then the optimizer's own rule, with the learning rate read from a variable or computed in the graph by a
schedule from the iteration counter. Slots (momentums, velocities) are ``gc.variable``'s created the first
time a parameter is seen; ``variables`` lists the iteration counter, the learning rate (a variable unless a
schedule gives it), any other state of the optimizer, and then every slot in creation order (what a saved
model stores).
"""
import math
import numbers
import re
import types

import numpy as np

import graphc as gc

from ._registry import from_config, to_config


# ---- learning-rate schedules ---------------------------------------------------------------------------------
def _number(value, name, what, minimum=0.0, strict=False) -> float:
    """``value`` as a float; ValueError naming ``what``'s argument unless it is a finite number >= (or, with
    ``strict``, >) ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or \
            value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{what}: {name} must be a finite number {relation} {minimum}, got {name}={value!r}")
    return float(value)


def _math(step):
    """``step`` as a float and the functions to compute with: graph ops for a graph tensor (the iteration
    counter), numpy for a number."""
    if isinstance(step, gc.Node):
        return gc.cast(step, "float32"), gc
    return np.float64(step), np


class LearningRateSchedule:
    """Keras' base class. ``schedule(step)`` is the learning rate at ``step``: a float32 graph tensor when
    ``step`` is one (the optimizer passes its iteration counter, so the rate is computed in the training
    step), a float when it is a number."""

    def __call__(self, step):
        rate = self.rate(*_math(step))
        return rate if isinstance(step, gc.Node) else float(rate)

    def rate(self, step, xp):
        """The rate at the float ``step``, computed with ``xp`` (graphc or numpy)."""
        raise NotImplementedError(f"{type(self).__name__} must define rate(step, xp)")

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must define get_config() to be saved")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ^ (step / decay_steps), the exponent floored with ``staircase``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate", name)
        self.decay_steps = _number(decay_steps, "decay_steps", name, strict=True)
        self.decay_rate = _number(decay_rate, "decay_rate", name)
        self.staircase, self.name = bool(staircase), name

    def rate(self, step, xp):
        p = xp.floor_divide(step, self.decay_steps) if self.staircase else step / self.decay_steps
        return self.initial_learning_rate * xp.power(self.decay_rate, p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] up to step boundaries[0] (inclusive), values[i] for boundaries[i-1] < step <= boundaries[i],
    values[-1] after the last boundary. Boundaries are compared as integers, as Keras casts them to the
    counter's type."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"{name}: boundaries must be one shorter than values, got {len(boundaries)} boundaries "
                             f"and {len(values)} values")
        steps = [int(_number(b, "boundaries", name)) for b in boundaries]
        if steps != sorted(steps):
            raise ValueError(f"{name}: boundaries must be increasing, got {boundaries}")
        self.boundaries, self.values, self.name = boundaries, [_number(v, "values", name) for v in values], name
        self._steps = steps

    def __call__(self, step):
        # Compared on the integer counter itself, not on its float copy.
        xp = gc if isinstance(step, gc.Node) else np
        rate = self.values[-1]
        for boundary, value in zip(reversed(self._steps), reversed(self.values[:-1])):
            rate = xp.where(xp.less_equal(step, boundary), value, rate)
        return rate if xp is gc else float(rate)

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """initial_learning_rate * ((1 - alpha) * (1 + cos(pi * s / decay_steps)) / 2 + alpha), s = min(step,
    decay_steps). With ``warmup_target``, a linear rise from initial_learning_rate to warmup_target over
    ``warmup_steps`` first, then the same decay from warmup_target."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate", name)
        self.decay_steps = _number(decay_steps, "decay_steps", name, strict=True)
        self.alpha = _number(alpha, "alpha", name)
        self.warmup_target = None if warmup_target is None else _number(warmup_target, "warmup_target", name)
        self.warmup_steps, self.name = _number(warmup_steps, "warmup_steps", name), name

    def _decayed(self, step, xp, rate):
        cosine = 0.5 * (1.0 + xp.cos(math.pi * (step / self.decay_steps)))
        return rate * ((1 - self.alpha) * cosine + self.alpha)

    def rate(self, step, xp):
        if self.warmup_target is None:
            return self._decayed(xp.minimum(step, self.decay_steps), xp, self.initial_learning_rate)
        step = xp.minimum(step, self.decay_steps + self.warmup_steps)
        # max(warmup_steps, 1): the warmup branch is only taken while step < warmup_steps, so never for 0 steps.
        warmup = (self.warmup_target - self.initial_learning_rate) * (step / max(self.warmup_steps, 1.0)) + \
            self.initial_learning_rate
        return xp.where(xp.less(step, self.warmup_steps), warmup,
                        self._decayed(step - self.warmup_steps, xp, self.warmup_target))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay)}


def serialize_schedule(schedule: LearningRateSchedule) -> dict:
    return to_config(schedule)


def deserialize_schedule(config: dict) -> LearningRateSchedule:
    return from_config(SCHEDULES, config, "learning rate schedule")


# Keras' spelling: graphc.keras.optimizers.schedules.ExponentialDecay(...).
schedules = types.SimpleNamespace(LearningRateSchedule=LearningRateSchedule, serialize=serialize_schedule,
                                  deserialize=deserialize_schedule, **SCHEDULES)


# ---- optimizers -------------------------------------------------------------------------------------------
class Optimizer:
    """Base class: subclasses name their per-parameter slots and write ``update_step``."""

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None):
        what = type(self).__name__
        clipping = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        if sum(value is not None for value in clipping.values()) > 1:
            raise ValueError(f"{what}: only one of clipnorm, clipvalue and global_clipnorm can be set, got "
                             + ", ".join(f"{k}={v}" for k, v in clipping.items()))
        for key, value in clipping.items():
            setattr(self, key, None if value is None else _number(value, key, what, strict=True))
        self.weight_decay = None if weight_decay is None else _number(weight_decay, "weight_decay", what)
        self.name = name or what.lower()
        self.iterations = gc.variable(np.array(0, dtype=np.int64), name="iterations")
        if isinstance(learning_rate, LearningRateSchedule):
            self._learning_rate, self._state = learning_rate, [self.iterations]
        else:
            # A variable rather than a constant so that changing it needs no recompilation.
            rate = np.float32(_number(learning_rate, "learning_rate", what))
            self._learning_rate = gc.variable(rate, name="learning_rate", trainable=False)
            self._state = [self.iterations, self._learning_rate]
        self._slots = {}  # parameter id -> {slot name: variable}
        self._no_decay_ids, self._no_decay_pattern = set(), None

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keep weight decay off the variables of ``var_list`` and off those whose name matches one of the
        regular expressions ``var_names`` (``['bias']``: every bias). Only before the first ``updates``."""
        if self._slots:
            raise ValueError(f"{type(self).__name__}.exclude_from_weight_decay: call it before the optimizer "
                             f"builds its first training step")
        self._no_decay_ids = {variable.id for variable in var_list or ()}
        self._no_decay_pattern = re.compile("|".join(var_names)) if var_names else None

    def _decays(self, param) -> bool:
        return self.weight_decay is not None and param.id not in self._no_decay_ids and not (
            self._no_decay_pattern and self._no_decay_pattern.search(param.name or ""))

    @property
    def learning_rate(self) -> float:
        """The rate the next step uses (a schedule's value at the current iteration)."""
        if isinstance(self._learning_rate, LearningRateSchedule):
            return self._learning_rate(int(self.iterations.value))
        return float(self._learning_rate.value)

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(f"{type(self).__name__} was created with the schedule "
                            f"{type(self._learning_rate).__name__} as its learning_rate, which cannot be set; "
                            f"create the optimizer with a float learning_rate to change it during training")
        self._learning_rate.value = np.float32(_number(value, "learning_rate", type(self).__name__))

    @property
    def variables(self) -> list:
        slots = [variable for per_param in self._slots.values() for variable in per_param.values()]
        return [*self._state, *slots]

    def slot_names(self) -> tuple:
        return ()

    def initial_slot_value(self, name) -> float:
        return 0.0

    def updates(self, params, grads) -> list:
        """``(variable, new value)`` pairs for one step over ``params`` with gradients ``grads``."""
        rate = self._current_learning_rate()
        pairs = []
        for param, grad in zip(params, self._clipped(list(grads))):
            value = param - param * self.weight_decay * rate if self._decays(param) else param
            slots = self._slots_for(param)
            new_value, new_slots = self.update_step(value, grad, slots, rate)
            pairs += [(slots[name], new_slots[name]) for name in new_slots] + [(param, new_value)]
        pairs.append((self.iterations, self.iterations + 1))
        return pairs

    def update_step(self, value, grad, slots, learning_rate) -> tuple:
        """``(new value, {slot name: new slot value})`` for a parameter now worth ``value``."""
        raise NotImplementedError

    def _current_learning_rate(self):
        if isinstance(self._learning_rate, LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return self._learning_rate

    def _step(self, dtype):
        """t = iterations + 1, the number of the step being taken, as ``dtype``."""
        return gc.cast(self.iterations + 1, dtype)

    def _clipped(self, grads) -> list:
        """Keras' clipping: each gradient to norm <= clipnorm, all together to global norm <= global_clipnorm,
        or each entry to [-clipvalue, clipvalue]."""
        if self.clipnorm is not None:
            return [g * self.clipnorm / gc.maximum(gc.sqrt(gc.sum(gc.square(g))), self.clipnorm) for g in grads]
        if self.global_clipnorm is not None:
            squares = [gc.sum(gc.square(g)) for g in grads]
            norm = gc.sqrt(sum(squares[1:], squares[0]))
            return [g * (self.global_clipnorm / gc.maximum(norm, self.global_clipnorm)) for g in grads]
        if self.clipvalue is not None:
            return [gc.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def _slots_for(self, param) -> dict:
        if param.id not in self._slots:
            self._slots[param.id] = {
                name: gc.variable(np.full(param.shape, self.initial_slot_value(name), dtype=param.dtype),
                                  name=f"{param.name}/{name}", trainable=False)
                for name in self.slot_names()}
        return self._slots[param.id]

    def get_config(self) -> dict:
        rate = self._learning_rate
        return {"name": self.name,
                "learning_rate": serialize_schedule(rate) if isinstance(rate, LearningRateSchedule) else
                float(rate.value),
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = deserialize_schedule(config["learning_rate"])
        return cls(**config)


class SGD(Optimizer):
    """w -= lr * g; with momentum m = momentum * m - lr * g and w += m (Nesterov: w += momentum * m - lr * g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        if not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be between 0 and 1, got {momentum}")
        super().__init__(learning_rate, **kwargs)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def slot_names(self):
        return ("momentum",) if self.momentum else ()

    def update_step(self, value, grad, slots, learning_rate):
        step = learning_rate * grad
        if not self.momentum:
            return value - step, {}
        momentum = self.momentum * slots["momentum"] - step
        change = self.momentum * momentum - step if self.nesterov else momentum
        return value + change, {"momentum": momentum}

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """v = rho v + (1 - rho) g^2; w -= lr g / sqrt(v + eps) (Keras 3 puts eps inside the root).

    ``centered`` subtracts the squared running mean of g from v; ``momentum`` accumulates the increments.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-07, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)

    def slot_names(self):
        return ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + \
            (("average_gradient",) if self.centered else ())

    def update_step(self, value, grad, slots, learning_rate):
        new = {"velocity": self.rho * slots["velocity"] + (1 - self.rho) * gc.square(grad)}
        if self.centered:
            new["average_gradient"] = self.rho * slots["average_gradient"] + (1 - self.rho) * grad
            denominator = new["velocity"] - gc.square(new["average_gradient"]) + self.epsilon
        else:
            denominator = new["velocity"] + self.epsilon
        increment = learning_rate * grad / gc.sqrt(denominator)
        if self.momentum > 0:
            increment = new["momentum"] = self.momentum * slots["momentum"] + increment
        return value - increment, new

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adam(Optimizer):
    """m += (1 - b1)(g - m); v += (1 - b2)(g^2 - v); w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    with t = iterations + 1; ``amsgrad`` divides by the running maximum of v instead."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)

    def slot_names(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def update_step(self, value, grad, slots, learning_rate):
        step = self._step(value.dtype)
        alpha = learning_rate * gc.sqrt(1 - self.beta_2 ** step) / (1 - self.beta_1 ** step)
        new = {"momentum": slots["momentum"] + (grad - slots["momentum"]) * (1 - self.beta_1),
               "velocity": slots["velocity"] + (gc.square(grad) - slots["velocity"]) * (1 - self.beta_2)}
        velocity = new["velocity"]
        if self.amsgrad:
            velocity = new["velocity_hat"] = gc.maximum(slots["velocity_hat"], velocity)
        return value - new["momentum"] * alpha / (gc.sqrt(velocity) + self.epsilon), new

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay: w -= w * weight_decay * lr before each Adam step (Keras' default 0.004)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-07,
                 amsgrad=False, **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a float, got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay, **kwargs)


class Adagrad(Optimizer):
    """a += g^2 (starting from initial_accumulator_value); w -= lr g / sqrt(a + eps)."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-07, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = _number(initial_accumulator_value, "initial_accumulator_value", "Adagrad")
        self.epsilon = float(epsilon)

    def slot_names(self):
        return ("accumulator",)

    def initial_slot_value(self, name):
        return self.initial_accumulator_value

    def update_step(self, value, grad, slots, learning_rate):
        accumulator = slots["accumulator"] + gc.square(grad)
        return value - learning_rate * grad / gc.sqrt(accumulator + self.epsilon), {"accumulator": accumulator}

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adamax(Optimizer):
    """m += (1 - b1)(g - m); u = max(b2 u, |g|); w -= lr m / ((1 - b1^t)(u + eps)), t = iterations + 1."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def slot_names(self):
        return ("momentum", "norm")

    def update_step(self, value, grad, slots, learning_rate):
        momentum = slots["momentum"] + (grad - slots["momentum"]) * (1 - self.beta_1)
        norm = gc.maximum(self.beta_2 * slots["norm"], gc.abs(grad))
        change = learning_rate * momentum / ((1 - self.beta_1 ** self._step(value.dtype)) * (norm + self.epsilon))
        return value - change, {"momentum": momentum, "norm": norm}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat 2015), as Keras 3 writes it: with u_t = b1 (1 - 0.96^t / 2) and the
    running product P_t = u_1 ... u_t (a variable of the optimizer),
    m_hat = u_{t+1} m / (1 - P_t u_{t+1}) + (1 - u_t) g / (1 - P_t), v_hat = v / (1 - b2^t),
    w -= lr m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self._u_product = gc.variable(np.float32(1.0), name="u_product", trainable=False)
        self._state.append(self._u_product)

    def slot_names(self):
        return ("momentum", "velocity")

    def _u(self, step):
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** step)

    def updates(self, params, grads):
        # P_t, shared by every parameter's step: computed once here, read by update_step.
        self._u_product_now = self._u_product * self._u(self._step("float32"))
        return super().updates(params, grads) + [(self._u_product, self._u_product_now)]

    def update_step(self, value, grad, slots, learning_rate):
        step = self._step(value.dtype)
        u_now, u_next = self._u(step), self._u(step + 1)
        product = gc.cast(self._u_product_now, value.dtype)
        momentum = slots["momentum"] + (grad - slots["momentum"]) * (1 - self.beta_1)
        velocity = slots["velocity"] + (gc.square(grad) - slots["velocity"]) * (1 - self.beta_2)
        m_hat = u_next * momentum / (1 - product * u_next) + (1 - u_now) * grad / (1 - product)
        v_hat = velocity / (1 - self.beta_2 ** step)
        return value - m_hat * learning_rate / (gc.sqrt(v_hat) + self.epsilon), {"momentum": momentum,
                                                                                 "velocity": velocity}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adagrad": Adagrad, "adamax": Adamax, "nadam": Nadam,
              "adamw": AdamW}


def get(identifier) -> Optimizer:
    """An optimizer from a name ('sgd', 'rmsprop', 'adam', 'adagrad', 'adamax', 'nadam', 'adamw', any case, with
    default settings), an instance, or a ``serialize`` dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; known optimizers: {', '.join(OPTIMIZERS)} "
                     f"(or an instance such as graphc.keras.optimizers.RMSprop(learning_rate=0.001))")


def serialize(optimizer: Optimizer) -> dict:
    return to_config(optimizer)


def deserialize(config: dict) -> Optimizer:
    return from_config({cls.__name__: cls for cls in OPTIMIZERS.values()}, config, "optimizer")
