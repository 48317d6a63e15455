"""Keras 3's mixed precision policies: ``keras.mixed_precision.set_global_policy("mixed_bfloat16")``.

Under ``mixed_bfloat16`` a model's matrix products read their operands rounded to bfloat16 and sum them in
float32, forward and backward; the weights, the optimizer's state, softmax, the losses and the metrics stay
float32 (``gc.function(..., precision="mixed_bfloat16")``, graphc/passes/autocast.py): the products of Dense
layers and the convolutions are the bfloat16 ones. A model reads the global policy when it builds its train,
evaluate and predict functions (on first use after ``compile``), so set the policy before training.

Importing this module does not import the compiler (graphc.passes and with it sympy): a program may import it
before preparing its data, whose peak memory would then hold the compiler's modules too.
"""


class DTypePolicy:
    """A named policy: ``compute_dtype`` is what the products read, ``variable_dtype`` what the weights hold."""

    def __init__(self, name="float32"):
        from ..passes.autocast import PRECISIONS
        if name not in PRECISIONS:
            raise ValueError(f"unknown dtype policy {name!r}; graphc knows {', '.join(repr(p) for p in PRECISIONS)}")
        self.name = name

    @property
    def compute_dtype(self) -> str:
        return "bfloat16" if self.name == "mixed_bfloat16" else "float32"

    @property
    def variable_dtype(self) -> str:
        return "float32"

    def __repr__(self):
        return f'<DTypePolicy "{self.name}">'


Policy = DTypePolicy  # Keras 2's name
_global_policy = None  # float32 until set_global_policy; made on first use (see the module's docstring)


def set_global_policy(policy):
    """Use ``policy`` (a name or a DTypePolicy) for the functions models build from now on."""
    global _global_policy
    _global_policy = policy if isinstance(policy, DTypePolicy) else DTypePolicy(policy)


def global_policy() -> DTypePolicy:
    global _global_policy
    if _global_policy is None:
        _global_policy = DTypePolicy()
    return _global_policy
