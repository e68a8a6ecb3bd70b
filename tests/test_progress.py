"""The training's progress bar: rate and time left from the median of the recent steps (model.progress)."""
import io

from model import progress


def test_time_left_is_the_median_step_times_the_steps_left(monkeypatch):
    """A slow step (a validation, a busy minute) moves neither the estimate at the start nor the bar's."""
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    spoken = []
    bar = progress.StepBar(total=1000, file=io.StringIO(), mininterval=0,
                           on_speed=lambda seconds, left: spoken.append((seconds, left)))
    step_seconds = [30.0] + [2.0] * 4 + [200.0] + [2.0] * 14  # the first warms up, the sixth validates
    for seconds in step_seconds:
        clock[0] += seconds
        bar.update()
    assert spoken == [(2.0, 1000 - 1 - progress.SPEED_STEPS)]  # once, after SPEED_STEPS steps past the first
    assert bar.format_dict["rate"] == 0.5
    assert "32:40" in str(bar)  # (1000 - 20) steps left at 2 s
    for _ in range(progress.RECENT_STEPS):  # a lasting change of speed is followed
        clock[0] += 3.0
        bar.update()
    assert bar.seconds_per_step() == 3.0


def test_a_bar_that_shows_nothing_still_counts(monkeypatch):
    """Ranks other than 0 train with a disabled bar: the same calls, no output."""
    bar = progress.StepBar(total=5, disable=True)
    for _ in range(5):
        bar.update()
    assert bar.seconds_per_step() is not None
    bar.close()
