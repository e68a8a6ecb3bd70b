"""Wording shared by the messages of the library and the command lines."""


def plural(count, noun, nouns=None):
    """'1 step', '2 steps' (nouns: the plural when it is not noun + 's')."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
