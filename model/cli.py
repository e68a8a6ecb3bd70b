"""What the command lines of Exercise 2 share: the argument parser, the argument types, the error exit
and the choice of device. Entry points (model.main, model.scripts.*, scripts.*) import from here.
"""
import argparse
import difflib
import sys

import torch

from model.config import ConfigError


class CliParser(argparse.ArgumentParser):
    """argparse, but a usage error ends with the project's one line `error: <message>` (exit 2), and an
    unknown flag is named with the closest known one."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # one convention for every command: flags are spelled out
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            flags = [flag for action in self._actions for flag in action.option_strings]
            close = difflib.get_close_matches(unknown[0].split("=")[0], flags, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            self.error(f"unrecognized arguments: {unknown[0]}{hint}")
        return parsed

    def parse_known_args(self, args=None, namespace=None):
        # A misspelt flag is named before the missing required ones, which it may be meant to be.
        argv = sys.argv[1:] if args is None else list(args)
        flags = {flag for action in self._actions for flag in action.option_strings}
        for arg in argv:
            name = arg.split("=")[0]
            if arg.startswith("-") and len(arg) > 1 and not _is_number(arg) and name not in flags:
                close = difflib.get_close_matches(name, sorted(flags), n=1, cutoff=0.6)
                self.error(f"unrecognized arguments: {arg}" + (f"; did you mean {close[0]}?" if close else ""))
        return super().parse_known_args(argv, namespace)

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
