"""A row kernel's GEMM is compiled in a module of its own and cached on its own: a Keras model's evaluate
program loads the GEMM of h @ W2 (inside its softmax row kernel) that fit's train program compiled."""
import re

import numpy as np

from graphc.keras import layers, models
from graphc.lower import native


def test_evaluate_program_loads_the_train_programs_row_kernel_gemm(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "objects"))
    compiled, emit = [], native.emit_objects

    def recording(texts, target, processes=1):
        compiled.append([name for text in texts for name in re.findall(r'^define [^@]*@"?([\w.]+)', text, re.M)])
        return emit(texts, target, processes)
    monkeypatch.setattr(native, "emit_objects", recording)
    model = models.Sequential([layers.Dense(16, activation="relu", input_shape=(7,)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 7)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 37)]
    model.fit(x, y, epochs=1, batch_size=37, verbose=0)
    train_gemms = {name for name in compiled[0] if name.endswith("_gemm")}
    loss = model.evaluate(x, y, verbose=0)
    (evaluated,) = compiled[1:]
    # fit's step reads x through the batches' indices (Function.run_steps), so evaluate compiles x @ W1 itself
    assert "k1_matmul_add_gemm" in train_gemms and [n for n in evaluated if n.endswith("_gemm")] == [
        "k0_matmul_relu_gemm"]
    w1, b1, w2, b2 = model.get_weights()
    logits = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    np.testing.assert_allclose(loss, -(y * log_p).sum(1).mean(), rtol=1e-5)
