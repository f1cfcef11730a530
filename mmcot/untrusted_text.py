"""Values from untrusted files (checkpoints, configs) in messages: cut to a
bounded length, and described without calling anything of theirs (a
value's full ``repr`` can be as large as the file makes it through shared
references)."""
from typing import Any, Callable, Optional

_PLAIN = (float, bool, type(None))


def shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, ``...`` marking a cut."""
    return text if len(text) <= limit else text[:limit] + '...'


def describe(value: Any,
             width: int = 60,
             depth: int = 2,
             name: Optional[Callable[[Any], Optional[str]]] = None) -> str:
    """At most about ``width`` characters saying what ``value`` is.

    Strings and bytes show as their (cut) repr, numbers and None as
    themselves (ints of up to 64 bits), tuples as their first five items
    (``depth`` levels deep), anything else by its type name. Only exact
    built-in types are shown by value, so no ``__repr__`` of the value's
    runs. ``name``, if given, names the values it knows (a reader's own
    objects), the items of tuples included; None for the others.
    """
    known = name(value) if name is not None else None
    if known is not None:
        text = known
    elif type(value) in (str, bytes):
        text = repr(value[:width])
    elif type(value) in _PLAIN or (type(value) is int
                                   and value.bit_length() <= 64):
        text = repr(value)
    elif type(value) is tuple and depth > 0:
        items = [
            describe(item, width, depth - 1, name) for item in value[:5]
        ]
        text = f'({", ".join(items + ["..."] * (len(value) > 5))})'
    else:
        text = f'a {type(value).__qualname__}'
    return shorten(text, width)


def describe_error(error: BaseException, limit: int = 200) -> str:
    """``error`` for a message: its type, then its text (cut to ``limit``)
    where that is one string, or an OSError's number and reason (not its
    file names); other arguments (a KeyError's is the key, any object of
    the file) are left out."""
    if isinstance(error, OSError) and type(error.errno) is int and type(
            error.strerror) is str:
        return (f'{type(error).__name__}: [Errno {error.errno}] '
                f'{shorten(error.strerror, limit)}')
    args = error.args
    if len(args) == 1 and type(args[0]) is str and args[0].strip():
        text = ' '.join(args[0].split())  # one line
        return f'{type(error).__name__}: {shorten(text, limit)}'
    return type(error).__name__
