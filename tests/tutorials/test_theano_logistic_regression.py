"""The Theano tutorial's logistic regression (deeplearning.net "A Real Example: Logistic Regression"),
ported by replacing names only: theano.tensor -> graphc, theano.shared -> gc.variable,
theano.function -> gc.function. Before the stability rewrites its cost and gradients were NaN from the
first step: p_1 = 1/(1+exp(-z)) rounds to 1 for z > 37 in float64, and log(1 - p_1) = log(0)."""
import numpy
import pytest

import graphc as gc


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_the_theano_logistic_regression_tutorial_trains(backend):
    rng = numpy.random.RandomState(0)
    N = 400                                   # training sample size
    feats = 784                               # number of input variables
    # generate a dataset: D = (input_values, target_class)
    D = (rng.randn(N, feats), rng.randint(size=N, low=0, high=2))
    training_steps = 300                      # the tutorial runs 10000

    # Declare symbolic variables (T.dmatrix("x"), T.dvector("y"))
    x = gc.placeholder(("n", feats), "float64", name="x")
    y = gc.placeholder(("n",), "float64", name="y")
    # initialize the weight vector w randomly; this and b are shared so they keep their values between
    # training iterations (updates)
    w = gc.variable(rng.randn(feats), name="w")
    b = gc.variable(numpy.float64(0.), name="b")

    # Construct the expression graph
    p_1 = 1 / (1 + gc.exp(-gc.dot(x, w) - b))        # Probability that target = 1
    prediction = p_1 > 0.5                             # The prediction thresholded
    xent = -y * gc.log(p_1) - (1 - y) * gc.log(1 - p_1)  # Cross-entropy loss function
    cost = xent.mean() + 0.01 * (w ** 2).sum()         # The cost to minimize
    gw, gb = gc.grad(cost, [w, b])                     # Compute the gradient of the cost

    # Compile
    train = gc.function(inputs=[x, y], outputs=[prediction, xent, cost],
                        updates=((w, w - 0.1 * gw), (b, b - 0.1 * gb)), backend=backend)
    predict = gc.function(inputs=[x], outputs=prediction, backend=backend)

    # Train
    costs = []
    for i in range(training_steps):
        pred, err, c = train(D[0], D[1])
        costs.append(float(c))
    assert numpy.all(numpy.isfinite(costs)), costs[:5]
    assert numpy.all(numpy.isfinite(w.value)) and numpy.isfinite(b.value)
    assert costs[-1] < costs[0] / 10
    accuracy = numpy.mean(predict(D[0]) == D[1])
    assert accuracy >= 0.99  # the tutorial's predictions match its targets
