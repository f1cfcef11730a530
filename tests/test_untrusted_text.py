"""mmcot.untrusted_text: values from files in messages, bounded and
described without running anything of theirs."""
from collections import OrderedDict

from mmcot.untrusted_text import describe, describe_error, shorten


class _LoudRepr:
    """What a message must never call: its repr records the call."""

    calls = 0

    def __repr__(self):
        type(self).calls += 1
        return 'x' * 10_000


class _StrSubclass(str):

    def __repr__(self):
        raise AssertionError('repr of a str subclass was called')


def test_shorten_marks_a_cut():
    assert shorten('abc', 3) == 'abc'
    assert shorten('abcd', 3) == 'abc...'
    assert shorten('k' * 1000) == 'k' * 200 + '...'


def test_describe_shows_plain_values_and_bounds_them():
    assert describe('key') == "'key'"
    assert describe(b'\x00') == "b'\\x00'"
    assert describe(3) == '3'
    assert describe(-1.5) == '-1.5'
    assert describe(None) == 'None'
    assert describe(True) == 'True'
    assert describe(('a', 1)) == "('a', 1)"
    assert describe(tuple(range(7))) == '(0, 1, 2, 3, 4, ...)'
    assert describe(1 << 64) == 'a int'  # its repr could be megabytes
    long_key = describe('k' * 10_000)
    assert long_key == repr('k' * 60)[:60] + '...'
    assert len(describe(('k' * 500, ) * 5, 80)) == 83


def test_describe_names_other_values_by_type_without_calling_them():
    _LoudRepr.calls = 0
    assert describe(_LoudRepr()) == 'a _LoudRepr'
    assert describe((_LoudRepr(), [1])) == '(a _LoudRepr, a list)'
    assert _LoudRepr.calls == 0
    assert describe(_StrSubclass('k')) == 'a _StrSubclass'
    assert describe(OrderedDict(a=1)) == 'a OrderedDict'


def test_name_hook_names_known_values_in_tuples_too():

    def name(value):
        return 'os.system' if value is _LoudRepr else None

    assert describe(_LoudRepr, name=name) == 'os.system'
    assert describe((_LoudRepr, 'x'), name=name) == "(os.system, 'x')"
    assert describe(3, name=name) == '3'


def test_nested_tuples_stop_at_depth():
    nested = ((((1, ), ), ), )
    assert describe(nested) == '((a tuple))'
    assert describe(nested, depth=0) == 'a tuple'


def test_describe_error_keeps_text_but_not_file_objects():
    assert describe_error(ValueError(' bad shape \n')) == \
        'ValueError: bad shape'
    assert describe_error(RuntimeError('e' * 900), 500) == \
        'RuntimeError: ' + 'e' * 500 + '...'
    _LoudRepr.calls = 0
    assert describe_error(KeyError(_LoudRepr())) == 'KeyError'
    assert describe_error(KeyError('key', 'other')) == 'KeyError'
    assert describe_error(EOFError()) == 'EOFError'
    assert describe_error(PermissionError(13, 'Permission denied',
                                          '/x/y.pth')) == \
        'PermissionError: [Errno 13] Permission denied'
    assert describe_error(OSError(5, _LoudRepr())) == 'OSError'
    assert _LoudRepr.calls == 0
