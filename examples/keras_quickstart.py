"""The TensorFlow 2 / Keras beginner quickstart on graphc: Flatten, Dense 128 relu, Dropout 0.2 and Dense 10
logits trained with SparseCategoricalCrossentropy(from_logits=True) and adam for 5 epochs.

The imports differ from the tutorial (``import tensorflow as tf`` and ``tf.keras.X`` become ``from graphc import
keras`` and ``keras.X``, Keras 3's spelling); its eager asides lose ``.numpy()`` (graphc returns numpy arrays)
and ``tf.nn.softmax``; its last lines, ``probability_model = tf.keras.Sequential([model,
tf.keras.layers.Softmax()])``, are left out (graphc.keras cannot nest models and has no Softmax layer: see
docs/keras.md). Added: a callback printing each epoch's time and optional arguments: --epochs, --seed, --samples
(train on the first N training images for a quick run), --distributed and --mixed-bfloat16.

    python examples/keras_quickstart.py [--epochs 5] [--seed 0] [--samples 60000]
"""
from graphc import keras

from example_support import EpochTimer, example_arguments


args = example_arguments(__doc__, samples=True)

mnist = keras.datasets.mnist

(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train, x_test = x_train / 255.0, x_test / 255.0

model = keras.models.Sequential([
  keras.layers.Flatten(input_shape=(28, 28)),
  keras.layers.Dense(128, activation='relu'),
  keras.layers.Dropout(0.2),
  keras.layers.Dense(10)
])

predictions = model(x_train[:1])
print("logits of the untrained model for the first image:", predictions)

loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
print("its loss (about -log(1/10) = 2.3 untrained):", loss_fn(y_train[:1], predictions))

model.compile(optimizer='adam',
              loss=loss_fn,
              metrics=['accuracy'])

model.fit(x_train[:args.samples], y_train[:args.samples], epochs=args.epochs, callbacks=[EpochTimer()])

test_loss, test_acc = model.evaluate(x_test,  y_test, verbose=2)
print('test_acc:', test_acc)
