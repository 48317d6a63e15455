import io

import numpy as np
import pytest

from runtime.loop import fit_loop
from runtime.progress import ProgressBar

METRICS = {"loss": 0.25714, "accuracy": 0.92451}


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Utf8Stream(io.StringIO):
    encoding = "utf-8"


def make_bar(verbose, dynamic, target=469):
    stream, clock = Utf8Stream(), FakeClock()
    bar = ProgressBar(target, verbose=verbose, stream=stream, clock=clock, dynamic=dynamic)
    return bar, stream, clock


def test_verbose_1_final_line_matches_keras():
    bar, stream, clock = make_bar(verbose=1, dynamic=False)
    clock.now += 1.876  # 4 ms per step over 469 steps
    bar.update(469, METRICS, finalize=True)
    assert stream.getvalue() == "469/469 ━━━━━━━━━━━━━━━━━━━━ 2s 4ms/step - accuracy: 0.9245 - loss: 0.2571\n"


def test_verbose_1_without_a_tty_writes_only_the_final_line():
    bar, stream, clock = make_bar(verbose=1, dynamic=False)
    for step in range(1, 469):
        clock.now += 0.2
        bar.update(step, METRICS)
    assert stream.getvalue() == ""


def test_verbose_1_on_a_tty_redraws_in_place_with_eta_at_most_every_interval():
    bar, stream, clock = make_bar(verbose=1, dynamic=True)
    clock.now += 0.004
    bar.update(1, METRICS)        # first update is drawn
    clock.now += 0.05
    bar.update(2, METRICS)        # 0.05 s later: skipped
    clock.now = 100.0 + 0.4
    bar.update(100, METRICS)      # drawn: 4 ms/step, 369 steps left -> 1s ETA
    lines = stream.getvalue().split("\r")
    assert lines[0] == ""
    assert len(lines) == 3
    assert lines[1].startswith("  1/469 ─")
    assert lines[2] == "100/469 ━━━━──────────────── 1s 4ms/step - accuracy: 0.9245 - loss: 0.2571"
    clock.now = 100.0 + 1.876
    bar.update(469, METRICS, finalize=True)
    assert stream.getvalue().endswith("\r469/469 ━━━━━━━━━━━━━━━━━━━━ 2s 4ms/step - accuracy: 0.9245 - loss: 0.2571\n")


def test_a_shorter_redraw_is_padded_over_the_previous_line():
    bar, stream, clock = make_bar(verbose=1, dynamic=True, target=10)
    bar.update(1, {"loss": 12345.678})
    clock.now += 1
    bar.update(2, {})
    first, second = stream.getvalue().split("\r")[1:]
    assert len(second) == len(first) and second.endswith(" ")


def test_eta_shows_minutes_and_hours():
    bar, stream, clock = make_bar(verbose=1, dynamic=True, target=10000)
    clock.now += 1.0
    bar.update(1)                 # 1 s/step, 9999 s left
    assert " 2:46:39 1s/step" in stream.getvalue()
    bar, stream, clock = make_bar(verbose=1, dynamic=True, target=100)
    clock.now += 1.0
    bar.update(1)                 # 99 s left
    assert " 1:39 1s/step" in stream.getvalue()


def test_verbose_2_prints_one_line_without_bar():
    bar, stream, clock = make_bar(verbose=2, dynamic=True)
    clock.now += 0.2
    bar.update(50, METRICS)
    clock.now = 100.0 + 1.876
    bar.update(469, METRICS, finalize=True)
    assert stream.getvalue() == "469/469 - 2s - 4ms/step - accuracy: 0.9245 - loss: 0.2571\n"


def test_tiny_values_use_scientific_notation_and_fast_steps_microseconds():
    bar, stream, clock = make_bar(verbose=2, dynamic=False, target=1000)
    clock.now += 0.05
    bar.update(1000, {"loss": 0.0001234}, finalize=True)
    assert stream.getvalue() == "1000/1000 - 0s - 50us/step - loss: 1.2340e-04\n"


def test_ascii_stream_gets_an_ascii_bar():
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    bar = ProgressBar(4, verbose=1, stream=stream, clock=FakeClock(), dynamic=False)
    bar.update(4, finalize=True)
    stream.seek(0)
    assert stream.read().startswith("4/4 ==================== ")


def fit_output(verbose):
    stream = Utf8Stream()
    x = np.arange(10.0)
    fit_loop(lambda xb, yb: {"loss": 0.5}, x, x, epochs=2, batch_size=4, verbose=verbose, stream=stream,
             validation=(x, x), eval_step=lambda xb, yb: {"loss": 0.75})
    return stream.getvalue()


def test_fit_verbose_0_is_silent():
    assert fit_output(0) == ""


def test_fit_verbose_1_prints_epoch_headers_and_final_bars_with_validation():
    lines = fit_output(1).splitlines()
    assert len(lines) == 4
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    for line in (lines[1], lines[3]):
        assert line.startswith("3/3 ━━━━━━━━━━━━━━━━━━━━ ")
        assert line.endswith(" - loss: 0.5000 - val_loss: 0.7500")


def test_fit_verbose_2_prints_one_line_per_epoch_without_bar():
    lines = fit_output(2).splitlines()
    assert len(lines) == 4
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    for line in (lines[1], lines[3]):
        assert line.startswith("3/3 - ") and "━" not in line
        assert line.endswith(" - loss: 0.5000 - val_loss: 0.7500")


class TtyStream(Utf8Stream):
    def isatty(self):
        return True


def test_a_tty_stream_is_detected_and_a_nan_stop_ends_the_partial_line():
    stream = TtyStream()
    losses = iter([1.0, float("nan")])
    with pytest.raises(FloatingPointError):
        fit_loop(lambda xb, yb: {"loss": next(losses)}, np.zeros(4), np.zeros(4), batch_size=2,
                 verbose=1, stream=stream)
    output = stream.getvalue()
    assert output.startswith("\r1/2 ━━━━━━━━━━────────── ")  # no "Epoch 1/1" for a single epoch, as Keras 3
    assert output.endswith(" - loss: 1.0000\n")
