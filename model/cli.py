"""What the command lines share: the argument parser (of both exercises), the argument types, the error
exit, the choice of device, the stop signals. Entry points (main.py, model.main, model.scripts.*,
scripts.*) import from here.
"""
import argparse
import difflib
import signal
import sys
from contextlib import contextmanager

import torch

from model.config import ConfigError

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")  # finish the step, quicksave, exit 128 + N


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help with the description as written and each flag's default, except where there is none to
    show (None, False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class CliParser(argparse.ArgumentParser):
    """argparse, but a usage error ends with the project's one line `error: <message>` (exit 2), an
    unknown flag is named with the closest known one, flags are never abbreviated and --help shows the
    defaults. Every command line of the project (both exercises) is one of these."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # one convention for every command: flags are spelled out
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_threads(self):
        """--threads N: torch's CPU threads for this process (0: torch's default), set when the flags are parsed."""
        self.add_argument("--threads", type=non_negative_int, default=0, help="torch threads (0: torch's default)")

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            close = difflib.get_close_matches(unknown[0].split("=")[0], sorted(self._flags()), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            self.error(f"unrecognized arguments: {unknown[0]}{hint}")
        if getattr(parsed, "threads", 0):  # add_threads
            torch.set_num_threads(parsed.threads)
        return parsed

    def parse_known_args(self, args=None, namespace=None):
        # A misspelt flag is named before the missing required ones, which it may be meant to be.
        argv = sys.argv[1:] if args is None else list(args)
        flags = self._flags()
        for arg in argv:
            if arg == "--":  # everything after it is a value
                break
            name = arg.split("=")[0]
            known = name in flags or (not name.startswith("--") and name[:2] in flags)  # -n3 is -n 3
            if arg.startswith("-") and len(arg) > 1 and not _is_number(arg) and not known:
                close = difflib.get_close_matches(name, sorted(flags), n=1, cutoff=0.6)
                self.error(f"unrecognized arguments: {arg}" + (f"; did you mean {close[0]}?" if close else ""))
        return super().parse_known_args(argv, namespace)

    def _flags(self):
        """Every flag of this parser and of its sub-commands."""
        flags = set()
        for action in self._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags.update(sub._flags() if isinstance(sub, CliParser) else
                                 {flag for a in sub._actions for flag in a.option_strings})
        return flags

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text):
    """argparse type: an integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {value}")
    return value


def fail(message, code):
    """Print the project's one-line error to stderr -> code (the exit status to return)."""
    print(f"error: {message}", file=sys.stderr)
    return code


def describe_os_error(error):
    """An OSError as one line: what went wrong and on which file."""
    return f"{error.strerror or error}: {error.filename}" if error.filename else str(error)


def pick_device(index, log=print):
    """cuda:index when CUDA is available, else the CPU (saying so)."""
    if not torch.cuda.is_available():
        log("note: CUDA is not available; running on the CPU")
        return torch.device("cpu")
    if not 0 <= index < torch.cuda.device_count():
        raise ConfigError(f"--device {index}: there are {torch.cuda.device_count()} CUDA devices")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


@contextmanager
def stop_on_signals(stop):
    """While active, SIGINT/SIGTERM/SIGUSR1 ask the loop to stop after its step; a second Ctrl-C aborts.

    A repeated SIGTERM or SIGUSR1 (a cluster may send one to every process and the job script forward
    another) keeps the request to quicksave.
    """
    def handler(signum, frame):
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not stop:
            stop.request(signal.Signals(signum).name)

    signals = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield stop
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
