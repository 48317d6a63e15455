"""Ready-made graphs to dump without writing a file: ``graphc dump --example mnist-mlp``.

Written with the plain gc API, so they double as a picture of what a Keras
training step compiles to.
"""
import numpy as np

import graphc as gc


def glorot_uniform(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


def rmsprop_updates(params, grads, learning_rate=0.001, rho=0.9, epsilon=1e-7):
    """Keras 3's RMSprop: a running mean of squared gradients per parameter scales each step."""
    updates = []
    for param, grad in zip(params, grads):
        mean_square = gc.variable(np.zeros(param.shape, param.dtype), name=f"{param.name}_rms", trainable=False)
        new_mean_square = rho * mean_square + (1 - rho) * gc.square(grad)
        step = learning_rate * grad / gc.sqrt(new_mean_square + epsilon)
        updates += [(mean_square, new_mean_square), (param, param - step)]
    return updates


def mnist_mlp(hidden=512, seed=0, **function_options):
    """The seed model's training step: 784 -> Dense(512, relu) -> Dense(10, softmax), categorical
    cross-entropy, RMSprop, accuracy metric. Returns a gc.Function (x, y) -> [mean loss, accuracy]
    updating the 4 weights (and their 4 RMSprop accumulators). ``function_options`` go to gc.function
    (backend, optimize, threads)."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder(("batch", 784), name="x")
    y = gc.placeholder(("batch", 10), name="y")
    w1 = gc.variable(glorot_uniform(rng, 784, hidden), name="W1")
    b1 = gc.variable(np.zeros(hidden, np.float32), name="b1")
    w2 = gc.variable(glorot_uniform(rng, hidden, 10), name="W2")
    b2 = gc.variable(np.zeros(10, np.float32), name="b2")
    hidden_activation = gc.relu(x @ w1 + b1)
    probabilities = gc.softmax(hidden_activation @ w2 + b2)
    loss = gc.mean(gc.categorical_crossentropy(y, probabilities))
    accuracy = gc.mean(gc.cast(gc.equal(gc.argmax(probabilities, -1), gc.argmax(y, -1)), "float32"))
    params = [w1, b1, w2, b2]
    return gc.function([x, y], [loss, accuracy], updates=rmsprop_updates(params, gc.grad(loss, params)),
                       **function_options)


EXAMPLES = {"mnist-mlp": mnist_mlp}
