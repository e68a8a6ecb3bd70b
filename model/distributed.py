"""What the processes of one run agree on: when to stop, the means they log, the best validation loss.

With one process every function here is the identity; with several (torch.distributed initialised by the
caller) a stop requested on any rank (a signal, a pruned trial) stops every rank after the same step, the
logged training numbers are means over the ranks (a non-finite loss on one stops them all), and rank 0's
best validation loss is everyone's.
"""
import signal

import torch
import torch.distributed as dist


class StopFlag:
    """Asks the loop to stop after the current step; ``reason`` names who asked (e.g. 'SIGTERM')."""

    def __init__(self):
        self.reason = None

    def request(self, reason):
        self.reason = reason

    def __bool__(self):
        return self.reason is not None


class Ranks:
    """The processes of a run as the training loop sees them.

    ``requested`` may be set at any time (signal handlers, on_record); ``stop`` is what the loop obeys: the
    same flag with one process, with several an agreed copy, set on every rank at once after a step.
    """

    def __init__(self, rank=0, world_size=1, requested=None):
        self.rank, self.world_size = rank, world_size
        self.requested = requested if requested is not None else StopFlag()
        self.stop = self.requested if world_size == 1 else StopFlag()

    @property
    def is_main(self):
        return self.rank == 0

    def mean(self, parts):
        """The mean of a tensor over the ranks; a stop requested on any rank is set in ``stop`` on all.

        The stop reason travels as a signal number (0: none, 1: a reason that is not a signal).
        """
        if self.world_size == 1:
            return parts
        parts = parts.clone()
        dist.all_reduce(parts, op=dist.ReduceOp.SUM)
        code = torch.tensor([stop_code(self.requested.reason)], device=parts.device)
        dist.all_reduce(code, op=dist.ReduceOp.MAX)
        code = int(code.item())
        if code and not self.stop:
            own = stop_code(self.requested.reason) == code
            self.stop.request(self.requested.reason if own else stop_reason(code))
        return parts / self.world_size

    def from_rank_0(self, value, device):
        """A float that rank 0 knows, for every rank."""
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return tensor.item()


def stop_code(reason):
    """A stop reason as a number: 0 for none, the signal's number for a signal's name, else 1."""
    if reason is None:
        return 0
    return signal.Signals[reason].value if reason in signal.Signals.__members__ else 1


def stop_reason(code):
    """The reason a rank reports for a stop asked for elsewhere: the signal's name, else 'another rank'."""
    return signal.Signals(code).name if code > 1 else "another rank"
