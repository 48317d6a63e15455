"""The Keras MNIST convnet (Chollet, "Deep Learning with Python", chapter 5) on graphc.

Only the imports differ from the Keras program, plus optional arguments (--epochs, --seed, --samples, which
trains on the first N training images for a quick run, --distributed, --mixed-bfloat16) and a callback
printing the time each epoch took.

    python examples/mnist_convnet.py [--epochs 5] [--seed 0] [--samples 60000]
"""
from graphc.keras.datasets import mnist
from graphc.keras.utils import to_categorical
from graphc.keras import layers
from graphc.keras import models

from example_support import EpochTimer, example_arguments


args = example_arguments(__doc__, samples=True)

model = models.Sequential()
model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)))
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Conv2D(64, (3, 3), activation='relu'))
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Conv2D(64, (3, 3), activation='relu'))

model.add(layers.Flatten())
model.add(layers.Dense(64, activation='relu'))
model.add(layers.Dense(10, activation='softmax'))

model.summary()

(train_images, train_labels), (test_images, test_labels) = mnist.load_data()

train_images = train_images.reshape((60000, 28, 28, 1))
train_images = train_images.astype('float32') / 255

test_images = test_images.reshape((10000, 28, 28, 1))
test_images = test_images.astype('float32') / 255

train_labels = to_categorical(train_labels)
test_labels = to_categorical(test_labels)

model.compile(optimizer='rmsprop',
              loss='categorical_crossentropy',
              metrics=['accuracy'])
model.fit(train_images[:args.samples], train_labels[:args.samples], epochs=args.epochs, batch_size=64,
          callbacks=[EpochTimer()])

test_loss, test_acc = model.evaluate(test_images, test_labels)

print('test_acc:', test_acc)
