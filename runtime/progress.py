"""Keras-style progress output for training and evaluation.

verbose=1 prints::

    Epoch 1/5
    469/469 ━━━━━━━━━━━━━━━━━━━━ 2s 4ms/step - accuracy: 0.9245 - loss: 0.2571

On a TTY the line is redrawn in place (``\\r``) at most every ``interval``
seconds while running, showing the ETA instead of the elapsed time. When the
stream is not a TTY (logs, CI) only the final line is written, so log files
get one line per epoch instead of hundreds.

verbose=2 prints one line per epoch without the bar::

    Epoch 1/5
    469/469 - 2s - 4ms/step - accuracy: 0.9245 - loss: 0.2571

verbose=0 prints nothing.
"""

import sys
import time

BAR_WIDTH = 20


def write_epoch_header(epoch, epochs, verbose, stream=None):
    """Print ``Epoch {epoch+1}/{epochs}`` (``epoch`` is 0-based) unless verbose=0 or there is just one epoch, as
    Keras 3."""
    if verbose and epochs > 1:
        stream = stream or sys.stdout
        stream.write(f"Epoch {epoch + 1}/{epochs}\n")
        stream.flush()


class ProgressBar:
    """Progress of ``target`` steps; call update() after each step.

    ``clock`` and ``dynamic`` exist for tests: ``dynamic`` forces (True) or
    disables (False) in-place redrawing instead of asking ``stream.isatty()``.
    """

    def __init__(self, target, *, verbose=1, stream=None, interval=0.1,
                 clock=time.monotonic, dynamic=None):
        self.target = target
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.interval = interval
        self._clock = clock
        self._start = clock()
        self._last_draw = None
        self._drawn_width = 0
        self._dynamic = _is_tty(self.stream) if dynamic is None else dynamic
        self._done_char, self._todo_char = _bar_chars(self.stream)

    def update(self, current, values=None, finalize=False):
        """Report that ``current`` steps are done; ``values`` are metrics to show.

        ``finalize=True`` writes the final line (total time, time per step)
        and ends it with a newline.
        """
        values = values or {}
        now = self._clock()
        if finalize:
            self._write_final(current, values, now)
        elif self.verbose == 1 and self._dynamic and self._due(now):
            self._draw("\r" + self._running_line(current, values, now))
            self._last_draw = now

    def end_line(self):
        """End a partly drawn line, so that what is printed next starts on its own line."""
        if self._drawn_width:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn_width = 0

    def _due(self, now):
        return self._last_draw is None or now - self._last_draw >= self.interval

    def _write_final(self, current, values, now):
        elapsed = now - self._start
        per_step = _format_per_step(elapsed / max(current, 1))
        if self.verbose == 1:
            line = f"{self._counter(current)} {self._bar(current)} {elapsed:.0f}s {per_step}{_format_values(values)}"
            self._draw(("\r" if self._dynamic else "") + line)
        elif self.verbose == 2:
            self._draw(f"{self._counter(current)} - {elapsed:.0f}s - {per_step}{_format_values(values)}")
        else:
            return
        self.stream.write("\n")
        self.stream.flush()

    def _running_line(self, current, values, now):
        elapsed = now - self._start
        per_step = elapsed / max(current, 1)
        eta = "" if self.target is None else _format_eta(per_step * (self.target - current)) + " "
        return f"{self._counter(current)} {self._bar(current)} {eta}{_format_per_step(per_step)}{_format_values(values)}"

    def _draw(self, text):
        # Pad with spaces so a shorter line fully covers the previous one.
        width = len(text.lstrip("\r"))
        self.stream.write(text + " " * max(self._drawn_width - width, 0))
        self._drawn_width = width
        self.stream.flush()

    def _counter(self, current):
        if self.target is None:  # a generator of unknown length, shown as Keras does
            return f"{current}/Unknown"
        digits = len(str(self.target))
        return f"{current:>{digits}}/{self.target}"

    def _bar(self, current):
        if self.target is None:
            return self._todo_char * BAR_WIDTH
        done = int(BAR_WIDTH * min(current, self.target) / self.target) if self.target else BAR_WIDTH
        return self._done_char * done + self._todo_char * (BAR_WIDTH - done)


def _format_values(values):
    # Sorted so "val_*" entries follow the training ones, as in Keras.
    return "".join(f" - {name}: {_format_number(value)}" for name, value in sorted(values.items()))


def _format_number(value):
    # Same rule as Keras: fixed point unless the value is tiny.
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def _format_per_step(seconds):
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _format_eta(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


def _is_tty(stream):
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _bar_chars(stream):
    # Fall back to ASCII when the stream's encoding lacks the box characters
    # (e.g. a Windows console or LANG=C), instead of raising mid-training.
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        "━─".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "=", "."
    return "━", "─"
