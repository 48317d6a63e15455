"""BatchNormalization, as ``keras.layers.BatchNormalization`` in Keras 3."""
import graphc as gc

from .. import initializers
from .base import Layer
from .core import WeightOptions, check_int, feature_axis


class BatchNormalization(WeightOptions, Layer):
    """Normalizes each channel (the entries along ``axis``) to mean 0 and variance 1, then scales by ``gamma`` and
    shifts by ``beta``: ``gc.batch_normalization(x, mean, variance, beta, gamma, epsilon)``.

    Training mode uses the batch's statistics (mean and biased variance over every other axis, which the gradient
    flows through) and asks the training step to update the moving averages, as Keras 3:
    moving = moving * momentum + batch statistic * (1 - momentum), the biased variance included. Inference mode
    (and a layer made non-trainable) uses the moving averages. Weights, in Keras' order: gamma (if ``scale``),
    beta (if ``center``), moving_mean, moving_variance; the last two are not trained by gradients.
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, **kwargs):
        self.axis = check_int(axis, "BatchNormalization", "axis")
        self.momentum = initializers.check_number(momentum, "BatchNormalization", "momentum", at_least=0, at_most=1)
        self.epsilon = initializers.check_number(epsilon, "BatchNormalization", "epsilon", above=0)
        self.center, self.scale = bool(center), bool(scale)
        self.gamma = self.beta = None  # the weights build makes, gamma if ``scale``, beta if ``center``
        self.set_weight_options("BatchNormalization", beta_initializer=beta_initializer,
                                gamma_initializer=gamma_initializer, moving_mean_initializer=moving_mean_initializer,
                                moving_variance_initializer=moving_variance_initializer,
                                beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer)
        super().__init__(**kwargs)

    def weight_shapes(self, input_shape):
        channels = (input_shape[feature_axis(self, self.axis, input_shape)],)
        return {**({"gamma": channels} if self.scale else {}), **({"beta": channels} if self.center else {}),
                "moving_mean": channels, "moving_variance": channels}

    def non_trainable_names(self):
        return ("moving_mean", "moving_variance")

    def compute_output_shape(self, input_shape):
        feature_axis(self, self.axis, input_shape)
        return input_shape

    def call(self, x, training=False):
        x = x if x.dtype == "float32" else gc.cast(x, "float32")
        axis = self.axis % x.ndim
        if training and self.trainable:
            mean, variance = gc.moments(x, [a for a in range(x.ndim) if a != axis])
            for moving, statistic in ((self.moving_mean, mean), (self.moving_variance, variance)):
                self.add_update(moving, moving * self.momentum + statistic * (1 - self.momentum))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        # Vectors along ``axis``, as (channels, 1, ..., 1) so that they broadcast onto x.
        shape = (x.shape[axis],) + (1,) * (x.ndim - 1 - axis)
        vectors = [None if v is None else gc.reshape(v, shape) for v in (mean, variance, self.beta, self.gamma)]
        return gc.batch_normalization(x, *vectors, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, **self.weight_options_config()}
