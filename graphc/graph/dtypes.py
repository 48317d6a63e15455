"""The dtypes graphc knows, and how mixed dtypes combine.

Promotion follows JAX rather than numpy: a Python scalar takes the dtype of the
tensor it meets (``x * 0.5`` stays float32), and an integer meeting a float
becomes that float, never float64 by surprise.

bfloat16 (float32's sign and exponent with 7 mantissa bits) is numpy's through ``ml_dtypes``, the
implementation JAX uses: casts to it round to nearest even, keep NaN a NaN, and overflow to infinity as
float32 arithmetic does (bfloat16 has float32's range).
"""
import ml_dtypes
import numpy as np

DTYPES = ("bool", "int32", "int64", "bfloat16", "float32", "float64")
FLOATS = ("bfloat16", "float32", "float64")  # narrowest first
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
        return max(floats, key=FLOATS.index)
    ints = [d for d in dtypes if d in INTS]
    if ints:
        return "int64" if "int64" in ints else "int32"
    return "bool"


def can_feed(source, target: str) -> bool:
    """Whether an array of dtype ``source`` may be fed where ``target`` is expected (numpy's 'same_kind' casting)."""
    return np.can_cast(np.dtype(source), np.dtype(target), casting="same_kind")


def feed_problem(array: np.ndarray, target: str, what: str = "placeholder") -> str | None:
    """Why feeding ``array`` where ``target`` is expected could change a value, or None: casts numpy calls
    safe and integers to floats (in range, at worst rounded, as float arithmetic rounds) pass unlooked at;
    narrowing (int64 -> int32, float64 -> float32) costs one min/max pass, so 2**40 never becomes 0."""
    if (array.dtype == target or np.can_cast(array.dtype, target, casting="safe")
            or (is_float(target) and array.dtype.kind in "iu")):
        return None
    cannot = f"cannot safely feed {array.dtype} data to a {target} {what}"
    if not can_feed(array.dtype, target):
        return cannot
    info = ml_dtypes.finfo(target) if is_float(target) else np.iinfo(target)
    if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
        return None
    # Infinities and NaNs are values a float target holds too; only finite values out of range change.
    outside = np.isfinite(array) & ((array < info.min) | (array > info.max))
    if not outside.any():
        return None
    index = [int(i) for i in np.unravel_index(np.argmax(outside), array.shape)]
    return f"{cannot}: the value {array[tuple(index)]} at index {index} is outside {target}'s range"


def round_to_bfloat16(array) -> np.ndarray:
    """float32 ``array`` rounded to bfloat16 (nearest even) and widened back: what a product marked
    ``precision=bfloat16`` (graphc.passes.autocast) reads for its operands."""
    return np.asarray(array, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)
