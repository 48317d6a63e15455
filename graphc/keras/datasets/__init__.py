"""Datasets with Keras' ``load_data()`` interface."""

from . import mnist
