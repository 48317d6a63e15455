"""The classic Keras MNIST example (Chollet, "Deep Learning with Python", chapter 2) on graphc.

Only the imports differ from the Keras program, plus optional arguments (--epochs, --seed, --distributed,
--mixed-bfloat16) and a callback printing the time each epoch took.

    python examples/mnist_mlp.py [--epochs 5] [--seed 0] [--mixed-bfloat16]
    mpiexec -n 2 python examples/mnist_mlp.py --distributed    # data parallel (pip install -e '.[mpi]')
"""
from graphc.keras.datasets import mnist
from graphc.keras.utils import to_categorical
from graphc.keras import models, layers

from example_support import EpochTimer, example_arguments


args = example_arguments(__doc__)

(train_images, train_labels), (test_images, test_labels) = mnist.load_data()

train_images = train_images.reshape((60000, 28 * 28))
train_images = train_images.astype('float32') / 255

test_images = test_images.reshape((10000, 28 * 28))
test_images = test_images.astype('float32') / 255

train_labels = to_categorical(train_labels)
test_labels = to_categorical(test_labels)

network = models.Sequential()
network.add(layers.Dense(512, activation='relu', input_shape=(28 * 28,)))
network.add(layers.Dense(10, activation='softmax'))

network.compile(optimizer='rmsprop',
                loss='categorical_crossentropy',
                metrics=['accuracy'])

network.fit(train_images, train_labels, epochs=args.epochs, batch_size=128, callbacks=[EpochTimer()])

test_loss, test_acc = network.evaluate(test_images, test_labels)

print('test_acc:', test_acc)
