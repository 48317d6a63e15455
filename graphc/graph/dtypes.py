"""The dtypes graphc knows, and how mixed dtypes combine.

Promotion follows JAX rather than numpy: a Python scalar takes the dtype of the
tensor it meets (``x * 0.5`` stays float32), and an integer meeting a float
becomes that float, never float64 by surprise.
"""
import numpy as np

DTYPES = ("bool", "int32", "int64", "float32", "float64")
FLOATS = ("float32", "float64")
INTS = ("int32", "int64")
DEFAULT_FLOAT = "float32"


def as_dtype(dtype) -> str:
    """The canonical name of ``dtype`` (a string, numpy dtype or type); TypeError if graphc has no such dtype."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}; graphc supports {', '.join(DTYPES)}") from None
    if name not in DTYPES:
        raise TypeError(f"dtype {name} is not supported; graphc supports {', '.join(DTYPES)}")
    return name


def is_float(dtype: str) -> bool:
    return dtype in FLOATS


def promote(*dtypes: str) -> str:
    """The dtype of an elementwise result over operands of ``dtypes``: the widest float if any, else the widest int."""
    floats = [d for d in dtypes if d in FLOATS]
    if floats:
        return "float64" if "float64" in floats else "float32"
    ints = [d for d in dtypes if d in INTS]
    if ints:
        return "int64" if "int64" in ints else "int32"
    return "bool"


def can_feed(source, target: str) -> bool:
    """Whether an array of dtype ``source`` may be fed where ``target`` is expected (numpy's 'same_kind' casting)."""
    return np.can_cast(np.dtype(source), np.dtype(target), casting="same_kind")
