"""Ready-made graphs to dump without writing a file: ``graphc dump --example mnist-mlp``.

Written with the plain gc API, so they double as a picture of what a Keras
training step compiles to.
"""
import numpy as np

import graphc as gc


def glorot_uniform(rng, fan_in, fan_out, shape=None):
    """Keras' initializer for a kernel of ``shape`` (default (fan_in, fan_out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape or (fan_in, fan_out)).astype(np.float32)


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
    h = gc.relu(x @ w1 + b1)
    logits = h @ w2 + b2
    probabilities = gc.softmax(logits)
    loss = gc.mean(gc.categorical_crossentropy(y, probabilities))
    accuracy = gc.mean(gc.cast(gc.equal(gc.argmax(probabilities, -1), gc.argmax(y, -1)), "float32"))
    for tensor, name in [(h, "h"), (logits, "logits"), (loss, "loss"), (accuracy, "accuracy")]:
        tensor.name = name  # as Keras names its layers: the pictures show these names
    params = [w1, b1, w2, b2]
    return gc.function([x, y], [loss, accuracy], updates=rmsprop_updates(params, gc.grad(loss, params)),
                       **function_options)


def mnist_convnet(seed=0, **function_options):
    """The convnet of "Deep Learning with Python", chapter 5 (examples/mnist_convnet.py), its training step:
    (28, 28, 1) -> Conv2D(32, 3x3, relu) -> MaxPooling2D(2) -> Conv2D(64, 3x3, relu) -> MaxPooling2D(2)
    -> Conv2D(64, 3x3, relu) -> Flatten -> Dense(64, relu) -> Dense(10, softmax), categorical cross-entropy,
    RMSprop, accuracy. Returns a gc.Function (x, y) -> [mean loss, accuracy] updating the 10 weights (and their
    RMSprop accumulators). Each layer is written as Keras writes it: the convolution or matmul, + bias, then the
    activation, which the optimizer fuses into one GEMM kernel."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder(("batch", 28, 28, 1), name="x")
    y = gc.placeholder(("batch", 10), name="y")
    params, h, channels = [], x, 1
    for layer, filters in enumerate((32, 64, 64), 1):
        kernel = gc.variable(glorot_uniform(rng, 9 * channels, 9 * filters, (3, 3, channels, filters)),
                             name=f"K{layer}")
        bias = gc.variable(np.zeros(filters, np.float32), name=f"c{layer}")
        h = gc.relu(gc.conv2d(h, kernel) + bias)
        h.name = f"conv{layer}"
        if layer < 3:
            h = gc.max_pool2d(h, 2)
            h.name = f"pool{layer}"
        params += [kernel, bias]
        channels = filters
    w1 = gc.variable(glorot_uniform(rng, 576, 64), name="W1")
    b1 = gc.variable(np.zeros(64, np.float32), name="b1")
    w2 = gc.variable(glorot_uniform(rng, 64, 10), name="W2")
    b2 = gc.variable(np.zeros(10, np.float32), name="b2")
    dense = gc.relu(gc.reshape(h, (x.shape[0], 576)) @ w1 + b1)
    logits = dense @ w2 + b2
    probabilities = gc.softmax(logits)
    loss = gc.mean(gc.categorical_crossentropy(y, probabilities))
    accuracy = gc.mean(gc.cast(gc.equal(gc.argmax(probabilities, -1), gc.argmax(y, -1)), "float32"))
    for tensor, name in [(dense, "dense"), (logits, "logits"), (loss, "loss"), (accuracy, "accuracy")]:
        tensor.name = name
    params += [w1, b1, w2, b2]
    return gc.function([x, y], [loss, accuracy], updates=rmsprop_updates(params, gc.grad(loss, params)),
                       **function_options)


EXAMPLES = {"mnist-mlp": mnist_mlp, "mnist-convnet": mnist_convnet}
