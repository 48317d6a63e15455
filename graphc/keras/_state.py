"""Session-wide state of graphc.keras, as Keras keeps it: the random generator and the auto-name counters.

``set_random_seed`` and ``clear_session`` (in ``graphc.keras.utils``) reset them.
"""
import collections
import re

import numpy as np

_generator = None  # made on first use: numpy.random costs 2.5 MiB, which a program preparing its data need not hold
_name_counts = collections.Counter()


def generator() -> "np.random.Generator":
    """The generator every initializer and every fit's shuffling draws from (seeded from the OS unless
    ``set_random_seed`` seeded it)."""
    global _generator
    if _generator is None:
        _generator = np.random.default_rng()
    return _generator


def seed_generator(seed):
    global _generator
    _generator = np.random.default_rng(seed)


def unique_name(class_name: str) -> str:
    """Keras' auto-names: ``Dense`` gives dense, dense_1, dense_2, ... across the session."""
    base = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", class_name).lower()
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def reset_names():
    _name_counts.clear()
