"""How long training will take: the progress bar's rate and time left from the median of the recent steps.

tqdm's own estimate is a moving average of the rate, which a validation pass, a checkpoint write or a busy
minute on a shared machine throws far off (on 2 busy cores one run showed between 4:39 and 8:00 h left, and
the estimate printed at the start, timed over 3 steps, 4.1 h, 5.4 h or 20.2 h for the same command). The
median of the recent steps' times passes over such outliers and still follows a lasting change of speed.
"""
import statistics
import time
from collections import deque

from tqdm import tqdm

SPEED_STEPS = 10  # steps after the first (which warms up) whose median time the estimate at the start gives
RECENT_STEPS = 100  # steps whose median time gives the bar's rate and time left


class StepBar(tqdm):
    """tqdm over training steps (one update() per step) whose rate is one over the median time of the last
    RECENT_STEPS steps. The first step of the process is not timed: it warms up (allocations, compiling).

    on_speed: called once, after SPEED_STEPS timed steps, as on_speed(seconds_per_step, steps_left), e.g. to
    print how long the run will take.
    """

    def __init__(self, *args, on_speed=None, **kwargs):
        self.step_seconds, self.last_update, self.on_speed = deque(maxlen=RECENT_STEPS), None, on_speed
        super().__init__(*args, **kwargs)

    def update(self, n=1):
        now = time.perf_counter()
        if self.last_update is not None:
            self.step_seconds.append((now - self.last_update) / n)
        self.last_update = now
        if self.on_speed is not None and len(self.step_seconds) == SPEED_STEPS:
            self.on_speed(self.seconds_per_step(), self.total - self.n - n)
            self.on_speed = None
        return super().update(n)

    def seconds_per_step(self):
        """The median time of the recent steps (None before the second step)."""
        return statistics.median(self.step_seconds) if self.step_seconds else None

    @property
    def format_dict(self):
        values = super().format_dict  # what tqdm draws the bar from: its time left is (total - n) / rate
        if self.step_seconds:
            values["rate"] = 1 / self.seconds_per_step()
        return values
