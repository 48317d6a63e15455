"""Optimizers with Keras 3's update rules, written as graph nodes.

``optimizer.updates(params, grads)`` returns ``(variable, new value)`` pairs for one training step --
every parameter, every slot and the iteration counter -- which ``gc.function(..., updates=...)`` applies
together after computing all new values from the old ones. Slots (momentums, velocities) are
``gc.variable``'s created the first time a parameter is seen; ``variables`` lists the iteration counter,
the learning rate and then every slot, in creation order (what a saved model stores).
"""
import numpy as np

import graphc as gc


class Optimizer:
    """Base class: subclasses name their per-parameter slots and write ``update_step``."""

    def __init__(self, learning_rate):
        self.iterations = gc.variable(np.array(0, dtype=np.int64), name="iterations")
        # A variable rather than a constant so that changing it needs no recompilation.
        self._learning_rate = gc.variable(np.array(learning_rate, dtype=np.float32), name="learning_rate")
        self._slots = {}  # parameter id -> {slot name: variable}

    @property
    def learning_rate(self) -> float:
        return float(self._learning_rate.value)

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate.value = np.float32(value)

    @property
    def variables(self) -> list:
        slots = [variable for per_param in self._slots.values() for variable in per_param.values()]
        return [self.iterations, self._learning_rate, *slots]

    def slot_names(self) -> tuple:
        return ()

    def updates(self, params, grads) -> list:
        """``(variable, new value)`` pairs for one step over ``params`` with gradients ``grads``."""
        pairs = []
        for param, grad in zip(params, grads):
            pairs += self.update_step(param, grad, self._slots_for(param))
        pairs.append((self.iterations, self.iterations + 1))
        return pairs

    def update_step(self, param, grad, slots) -> list:
        raise NotImplementedError

    def _slots_for(self, param) -> dict:
        if param.id not in self._slots:
            self._slots[param.id] = {
                name: gc.variable(np.zeros(param.shape, dtype=param.dtype), name=f"{param.name}/{name}")
                for name in self.slot_names()}
        return self._slots[param.id]

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SGD(Optimizer):
    """w -= lr * g; with momentum m = momentum * m - lr * g and w += m (Nesterov: w += momentum * m - lr * g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        if not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be between 0 and 1, got {momentum}")
        super().__init__(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def slot_names(self):
        return ("momentum",) if self.momentum else ()

    def update_step(self, param, grad, slots):
        step = self._learning_rate * grad
        if not self.momentum:
            return [(param, param - step)]
        momentum = self.momentum * slots["momentum"] - step
        change = self.momentum * momentum - step if self.nesterov else momentum
        return [(slots["momentum"], momentum), (param, param + change)]

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """v = rho v + (1 - rho) g^2; w -= lr g / sqrt(v + eps) (Keras 3 puts eps inside the root).

    ``centered`` subtracts the squared running mean of g from v; ``momentum`` accumulates the increments.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-07, centered=False):
        super().__init__(learning_rate)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)

    def slot_names(self):
        return ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + \
            (("average_gradient",) if self.centered else ())

    def update_step(self, param, grad, slots):
        velocity = self.rho * slots["velocity"] + (1 - self.rho) * gc.square(grad)
        pairs = [(slots["velocity"], velocity)]
        if self.centered:
            average = self.rho * slots["average_gradient"] + (1 - self.rho) * grad
            pairs.append((slots["average_gradient"], average))
            denominator = velocity - gc.square(average) + self.epsilon
        else:
            denominator = velocity + self.epsilon
        increment = self._learning_rate * grad / gc.sqrt(denominator)
        if self.momentum > 0:
            increment = self.momentum * slots["momentum"] + increment
            pairs.append((slots["momentum"], increment))
        return pairs + [(param, param - increment)]

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adam(Optimizer):
    """m += (1 - b1)(g - m); v += (1 - b2)(g^2 - v); w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    with t = iterations + 1; ``amsgrad`` divides by the running maximum of v instead."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07, amsgrad=False):
        super().__init__(learning_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)

    def slot_names(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def update_step(self, param, grad, slots):
        step = gc.cast(self.iterations + 1, param.dtype)
        alpha = self._learning_rate * gc.sqrt(1 - self.beta_2 ** step) / (1 - self.beta_1 ** step)
        momentum = slots["momentum"] + (grad - slots["momentum"]) * (1 - self.beta_1)
        velocity = slots["velocity"] + (gc.square(grad) - slots["velocity"]) * (1 - self.beta_2)
        pairs = [(slots["momentum"], momentum), (slots["velocity"], velocity)]
        if self.amsgrad:
            velocity = gc.maximum(slots["velocity_hat"], velocity)
            pairs.append((slots["velocity_hat"], velocity))
        return pairs + [(param, param - momentum * alpha / (gc.sqrt(velocity) + self.epsilon))]

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get(identifier) -> Optimizer:
    """An optimizer from a name ('sgd', 'rmsprop', 'adam', any case, with default settings), an instance,
    or a ``serialize`` dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; known optimizers: {', '.join(OPTIMIZERS)} "
                     f"(or an instance such as graphc.keras.optimizers.RMSprop(learning_rate=0.001))")


def serialize(optimizer: Optimizer) -> dict:
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config: dict) -> Optimizer:
    classes = {cls.__name__: cls for cls in OPTIMIZERS.values()}
    if config.get("class_name") not in classes:
        raise ValueError(f"unknown optimizer class {config.get('class_name')!r}; known: {', '.join(classes)}")
    return classes[config["class_name"]].from_config(config["config"])
