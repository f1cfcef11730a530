"""A pickle reader that builds only what MMEngine runner checkpoints hold.

torch's ``weights_only`` unpickler refuses the training state MMEngine 0.10.7
writes into a runner checkpoint: the message hub's ``HistoryBuffer`` objects,
NumPy arrays, dtypes and scalars, and ``getattr`` references to the buffers'
statistics methods. Allowing those names in torch's unpickler
(``torch.serialization.safe_globals``) is not safe: it widens ``torch.load``
for the whole process, lets the file call ``HistoryBuffer.__setstate__``
(which writes into a class-level registry) and NumPy's ``dtype`` and
``ndarray`` state setters (which trust sizes and flags from the file).

This module reads the pickle protocol 2 that ``torch.save`` writes, opcode by
opcode, and never imports, calls or sets the state of anything a file names.
Each name it accepts maps to a builder here that checks its arguments and
makes the object itself:

- ``dict``, ``list``, ``tuple``, ``bytes``, ``collections.OrderedDict``
  (with a state dict's ``_metadata``) and ``collections.Counter``;
- tensors, parameters and torch dtypes; storages come from torch's own zip
  reader (this module is passed to ``torch.load`` as ``pickle_module``), which
  checks each storage against its record;
- NumPy arrays, dtypes and scalars of built-in numeric, bool and byte-string
  types;
- MMEngine ``HistoryBuffer`` objects, from checked one-dimensional numeric
  histories; ``getattr`` may return only the four built-in statistics
  methods, by name;
- ``argparse.Namespace`` (official CoTNet training checkpoints pickle theirs).

Anything else (another name, another opcode, an object used before it is
built, a history longer than :data:`MAX_HISTORY_LENGTH`, tuples nested
deeper than :data:`MAX_TUPLE_NESTING`, more bytes than the file can account
for) raises ``pickle.UnpicklingError``.
"""
import argparse
import io
import pickle
import pickletools
import struct
from collections import Counter, OrderedDict
from types import MappingProxyType
from typing import Any, BinaryIO, Callable, List, NoReturn, Optional, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from mmcot.untrusted_text import describe, describe_error

#: The longest message-hub history accepted (MMEngine's default
#: ``max_length`` is 1,000,000).
MAX_HISTORY_LENGTH = 10_000_000

#: What ``getattr(HistoryBuffer, name)`` may return, by name.
STATISTICS_METHODS = MappingProxyType({
    name: getattr(HistoryBuffer, name)
    for name in ('min', 'max', 'current', 'mean')
})

#: The deepest nesting of tuples in tuples accepted. Hashing a tuple (a dict
#: key) recurses through its nested tuples in C without a depth check: a
#: million levels overflow the stack and kill the process.
MAX_TUPLE_NESTING = 1000

#: What a builder spends of the reader's budget per dict entry it copies
#: (``Counter``, ``argparse.Namespace``) or checks (a state dict's
#: ``_metadata``): a file that passes one memo-shared dict to many of them
#: makes work and memory grow as their product, not as the file.
_ENTRY_COST = 16

_NUMERIC_DTYPE_CODES = frozenset(
    'b1 i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8 c8 c16'.split())
_MAX_BYTES_ITEMSIZE = 1 << 20
_HISTORY_KEYS = frozenset(
    ('max_length', '_log_history', '_count_history', 'statistics_methods'))
_TENSOR_METADATA_KEYS = frozenset(('conj', 'neg'))


def _refuse(message: str) -> NoReturn:
    raise pickle.UnpicklingError(message)


def _type_name(value: Any) -> str:
    return type(value).__qualname__


def _global_name(value: Any) -> Optional[str]:
    return value.name if type(value) is _Global else None


def _brief(value: Any, width: int = 60) -> str:
    """:func:`mmcot.untrusted_text.describe`, naming the allowed globals."""
    return describe(value, width, name=_global_name)


class _Global:
    """A name the file may use: what REDUCE (``call``) and NEWOBJ (``new``)
    make of it. Neither is the named object itself."""

    __slots__ = ('name', 'call', 'new')

    def __init__(self,
                 name: str,
                 call: Optional[Callable] = None,
                 new: Optional[Callable] = None):
        self.name, self.call, self.new = name, call, new

    def __repr__(self) -> str:
        return self.name


class _Pending:
    """An object made by REDUCE or NEWOBJ that only BUILD completes."""

    __slots__ = ('what', 'build', 'memo_keys')

    def __init__(self, what: str, build: Callable):
        self.what, self.build, self.memo_keys = what, build, []


def _is_int(value: Any, low: int = 0, high: Optional[int] = None) -> bool:
    return (type(value) is int and value >= low
            and (high is None or value <= high))


def _ints(value: Any, what: str, low: int = 0) -> tuple:
    if type(value) is not tuple or not all(_is_int(v, low)
                                           for v in value) or len(value) > 64:
        _refuse(f'{what} must be a tuple of at most 64 integers >= {low}, '
                f'got {_brief(value, 80)}')
    return value


# builtins, collections, codecs


def _bytes(reader, *args) -> bytes:
    if args:
        _refuse('bytes() with arguments is not allowed')
    return b''


def _encode(reader, text, encoding) -> bytes:
    if type(text) is not str or encoding not in ('latin1', 'latin-1'):
        _refuse('_codecs.encode is allowed only as (str, "latin1"), the way '
                'protocol 2 pickles bytes')
    reader.spend(len(text))
    return text.encode('latin1')


def _ordered_dict(reader, *args) -> OrderedDict:
    if args:
        _refuse('OrderedDict() with arguments is not allowed')
    return OrderedDict()


def _counter(reader, counts=None) -> Counter:
    if counts is None:
        return Counter()
    if type(counts) is not dict or not all(
            type(k) in (int, str) and type(v) is int
            for k, v in counts.items()):
        _refuse('Counter(...) takes a dict of int or str keys and int counts')
    reader.spend(_ENTRY_COST * len(counts))
    return Counter(counts)


_METADATA_FORM = ('a state dict\'s _metadata must map module names to dicts '
                  'of scalars')
_METADATA_SCALARS = (int, float, bool, str, type(None))


def _build_ordered_dict(reader, inst: OrderedDict, state) -> None:
    """A state dict's ``_metadata``: module name -> {str: scalar}."""
    if type(state) is not dict or set(state) != {'_metadata'}:
        _refuse('an OrderedDict may carry only a state dict\'s _metadata')
    metadata = state['_metadata']
    if type(metadata) not in (dict, OrderedDict):
        _refuse(_METADATA_FORM)
    for name, entry in metadata.items():
        if type(name) is not str or type(entry) is not dict:
            _refuse(_METADATA_FORM)
        reader.spend(_ENTRY_COST * (1 + len(entry)))
        if not all(type(k) is str and type(v) in _METADATA_SCALARS
                   for k, v in entry.items()):
            _refuse(_METADATA_FORM)
    inst._metadata = metadata


# torch


def _empty_hooks(hooks) -> bool:
    return type(hooks) in (dict, OrderedDict) and not hooks


def _rebuild_tensor_v2(reader,
                       storage,
                       storage_offset,
                       size,
                       stride,
                       requires_grad,
                       backward_hooks,
                       metadata=None) -> torch.Tensor:
    if type(storage) is not torch.storage.TypedStorage:
        _refuse(f'a tensor must be built on a storage of the file, got a '
                f'{_type_name(storage)}')
    size = _ints(size, 'a tensor size')
    stride = _ints(stride, 'a tensor stride')
    if len(size) != len(stride) or not _is_int(storage_offset):
        _refuse('a tensor needs an offset >= 0 and a stride per dimension')
    if type(requires_grad) is not bool or not _empty_hooks(backward_hooks):
        _refuse('a tensor takes a bool requires_grad and no backward hooks')
    if metadata is not None and (
            type(metadata) is not dict
            or not set(metadata) <= _TENSOR_METADATA_KEYS
            or not all(type(v) is bool for v in metadata.values())):
        _refuse('tensor metadata may only set the conj and neg bits')
    itemsize = storage.dtype.itemsize
    capacity = storage._untyped_storage.nbytes() // itemsize
    if all(size):
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= capacity:
            _refuse(f'a tensor of size {size}, stride {stride} and offset '
                    f'{storage_offset} reaches element {last} of a storage '
                    f'of {capacity}')
    return torch._utils._rebuild_tensor_v2(storage, storage_offset,
                                           size, stride, requires_grad,
                                           OrderedDict(), metadata)


def _rebuild_parameter(reader, data, requires_grad,
                       backward_hooks) -> torch.nn.Parameter:
    if type(data) is not torch.Tensor or type(requires_grad) is not bool \
            or not _empty_hooks(backward_hooks):
        _refuse('a Parameter takes a tensor, a bool and no backward hooks')
    return torch._utils._rebuild_parameter(data, requires_grad, OrderedDict())


# numpy

_NDARRAY = _Global('numpy.ndarray')


def _builtin_dtype(code: Any) -> np.dtype:
    """The dtype of a pickled code: built-in numeric, bool or ``S<n>``."""
    if type(code) is str and (code in _NUMERIC_DTYPE_CODES or
                              (code[:1] == 'S' and 1 < len(code) <= 8
                               and code[1:].isascii() and code[1:].isdigit()
                               and 0 < int(code[1:]) <= _MAX_BYTES_ITEMSIZE)):
        return np.dtype(code)
    _refuse(f'NumPy dtype {_brief(code, 40)} is not a built-in numeric, '
            'bool or byte-string type')


def _dtype(reader, code, align, copy) -> _Pending:
    dtype = _builtin_dtype(code)
    if align is not False or copy is not True:
        _refuse('numpy.dtype is allowed only as (code, False, True), the '
                'way NumPy pickles a dtype')

    def build(reader, state) -> np.dtype:
        if type(state) is not tuple or len(state) != 8:
            _refuse(f'the state of NumPy dtype {code} must be a tuple of 8, '
                    'without metadata')
        version, byteorder, subarray, names, fields, elsize, alignment, \
            flags = state
        if (version not in (3, 4) or subarray is not None or names is not None
                or fields is not None or (elsize, alignment)
                != ((-1, -1) if code in _NUMERIC_DTYPE_CODES else
                    (dtype.itemsize, 1)) or type(flags) is not int
                or flags != dtype.flags):
            _refuse(f'the state of NumPy dtype {code} changes its layout, '
                    'fields, sizes or flags')
        if dtype.byteorder == '|':
            if byteorder != '|':
                _refuse(f'NumPy dtype {code} has no byte order, got '
                        f'{_brief(byteorder, 20)}')
            return dtype
        if byteorder not in ('<', '>', '='):
            _refuse(f'unknown byte order {_brief(byteorder, 20)} for '
                    f'NumPy dtype {code}')
        return dtype.newbyteorder(byteorder)

    return _Pending(f'numpy.dtype({code!r})', build)


def _from_bytes(raw: bytes, dtype: np.dtype, shape: tuple,
                fortran: bool) -> np.ndarray:
    """A writable array of ``raw``; bools normalised to 0/1."""
    array = np.frombuffer(raw,
                          dtype=dtype).reshape(shape,
                                               order='F' if fortran else 'C')
    if dtype.kind == 'b':
        return array.view(np.uint8) != 0
    return array.copy(order='K')


def _reconstruct(reader, cls, shape, typecode) -> _Pending:
    if cls is not _NDARRAY or type(shape) is not tuple or shape != (0, ) \
            or type(typecode) is not bytes or typecode != b'b':
        _refuse('numpy _reconstruct is allowed only as (numpy.ndarray, (0,), '
                "b'b'), the way NumPy pickles an array")

    def build(reader, state) -> np.ndarray:
        if type(state) is not tuple or len(state) != 5:
            _refuse('the state of a NumPy array must be a tuple of 5')
        version, shape, dtype, fortran, raw = state
        shape = _ints(shape, 'a NumPy array shape')
        if version != 1 or not isinstance(dtype, np.dtype) \
                or type(fortran) is not bool or type(raw) is not bytes:
            _refuse('the state of a NumPy array must be (1, shape, a built '
                    'dtype, bool, bytes)')
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != len(raw):
            _refuse(f'a NumPy array of shape {shape} and dtype {dtype} needs '
                    f'{count * dtype.itemsize} bytes, the file gives '
                    f'{len(raw)}')
        reader.spend(len(raw))
        return _from_bytes(raw, dtype, shape, fortran)

    return _Pending('numpy array', build)


def _scalar(reader, dtype, raw) -> np.generic:
    if not isinstance(dtype, np.dtype) or type(raw) is not bytes \
            or len(raw) != dtype.itemsize:
        _refuse('a NumPy scalar takes a built dtype and exactly its itemsize '
                'in bytes')
    return _from_bytes(raw, dtype, (), False)[()]


# mmengine, argparse

_HISTORY_BUFFER_NAME = 'mmengine.logging.history_buffer.HistoryBuffer'


def _history_array(value: Any, key: str) -> np.ndarray:
    if type(value) is not np.ndarray or value.ndim != 1 \
            or value.dtype.kind not in 'biuf':
        _refuse(f'HistoryBuffer {key} must be a one-dimensional numeric '
                f'array, got {_type_name(value)}')
    return value


def _history_buffer(reader, *args) -> _Pending:
    if args:
        _refuse('HistoryBuffer is built without arguments, from its state')

    def build(reader, state) -> HistoryBuffer:
        if type(state) is not dict or not set(state) <= _HISTORY_KEYS:
            _refuse('the state of a HistoryBuffer may hold only '
                    f'{sorted(_HISTORY_KEYS)}')
        max_length = state.get('max_length', 1000000)
        if not _is_int(max_length, 1, MAX_HISTORY_LENGTH):
            _refuse(f'HistoryBuffer max_length must be an int from 1 to '
                    f'{MAX_HISTORY_LENGTH}, got {_brief(max_length, 40)}')
        logs = _history_array(state.get('_log_history', np.array([])),
                              '_log_history')
        counts = _history_array(state.get('_count_history', np.array([])),
                                '_count_history')
        if len(logs) != len(counts) or len(logs) > max_length:
            _refuse(f'HistoryBuffer histories must have equal lengths of at '
                    f'most max_length={max_length}, got {len(logs)} and '
                    f'{len(counts)}')
        methods = state.get('statistics_methods', {})
        if type(methods) is not dict or not all(
                type(name) is str and name in STATISTICS_METHODS
                and method is STATISTICS_METHODS[name]
                for name, method in methods.items()):
            _refuse('HistoryBuffer statistics_methods may only name the '
                    f'built-in {sorted(STATISTICS_METHODS)}')
        buffer = HistoryBuffer.__new__(HistoryBuffer)
        buffer.max_length = max_length
        buffer._log_history, buffer._count_history = logs, counts
        # registers the four built-ins, as any HistoryBuffer() does
        buffer._set_default_statistics()
        return buffer

    return _Pending('HistoryBuffer', build)


def _statistics_method(reader, owner, name) -> Callable:
    if owner is not _GLOBALS[_HISTORY_BUFFER_NAME] or type(name) is not str \
            or name not in STATISTICS_METHODS:
        _refuse(f'getattr({_brief(owner)}, {_brief(name, 40)}) is not '
                'allowed: only '
                'HistoryBuffer statistics methods '
                f'{sorted(STATISTICS_METHODS)}')
    return STATISTICS_METHODS[name]


def _namespace(reader, *args) -> _Pending:
    if args:
        _refuse('argparse.Namespace is built without arguments, from its '
                'state')

    def build(reader, state) -> argparse.Namespace:
        if type(state) is not dict or not all(
                type(k) is str and k.isidentifier() and not k.startswith('__')
                for k in state):
            _refuse('the state of an argparse.Namespace must map attribute '
                    'names to values')
        reader.spend(_ENTRY_COST * len(state))
        return argparse.Namespace(**state)

    return _Pending('argparse.Namespace', build)


def _allowed_globals() -> MappingProxyType:
    table = {}

    def add(name, **builders):
        table[name] = _Global(name, **builders)

    for builtins in ('builtins', '__builtin__'):
        add(f'{builtins}.bytes', call=_bytes)
        add(f'{builtins}.getattr', call=_statistics_method)
    add('_codecs.encode', call=_encode)
    add('collections.OrderedDict', call=_ordered_dict)
    add('collections.Counter', call=_counter)
    add('torch._utils._rebuild_tensor_v2', call=_rebuild_tensor_v2)
    add('torch._utils._rebuild_parameter', call=_rebuild_parameter)
    table['numpy.ndarray'] = _NDARRAY
    add('numpy.dtype', call=_dtype)
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        add(f'{module}._reconstruct', call=_reconstruct)
        add(f'{module}.scalar', call=_scalar)
    add(_HISTORY_BUFFER_NAME, new=_history_buffer)
    add('argparse.Namespace', new=_namespace)
    # inert values: dtypes, and the storage type persistent ids name
    table.update({
        f'torch.{name}': value
        for name, value in vars(torch).items()
        if isinstance(value, torch.dtype)
    })
    table['torch.UntypedStorage'] = torch.UntypedStorage
    return MappingProxyType(table)


_GLOBALS = _allowed_globals()

_OPCODES = {}


def _opcode(code: bytes):

    def register(method):
        _OPCODES[code[0]] = method
        return method

    return register


class Unpickler:
    """Reads one pickle (protocol 2) with the builders of this module.

    The interface ``torch.load(..., pickle_module=...)`` uses: constructed on
    the pickle's file object, given ``persistent_load`` (torch's storage
    reader), then :meth:`load`.

    Args:
        file: A binary file object holding the pickle.
        encoding (str): Accepted for ``torch.load``; protocol 2 pickles
            written by Python 3 hold no byte strings to decode.
    """

    def __init__(self, file, *, encoding: str = 'utf-8', **unused):
        self._data = file.read()
        check_tuple_nesting(io.BytesIO(self._data))
        self._pos = 0
        # bytes the builders may materialise: each legitimate byte stands
        # once in the pickle as text and once as the object made of it
        self._budget = 2 * len(self._data) + (1 << 16)
        self._unbuilt = 0

    def find_class(self, module: str, name: str) -> Any:
        """The builder or value the file may use for ``module.name``."""
        if type(module) is not str or type(name) is not str:
            _refuse('a global must be named by strings')
        try:
            return _GLOBALS[f'{module}.{name}']
        except KeyError:
            _refuse(f'global {module}.{name} is not allowed')

    def persistent_load(self, pid) -> NoReturn:
        _refuse('this pickle refers to storages, but no storage reader was '
                'given')

    def spend(self, nbytes: int) -> None:
        """Account for ``nbytes`` materialised by a builder."""
        self._budget -= nbytes
        if self._budget < 0:
            _refuse('the pickle builds more bytes than the file holds')

    def load(self) -> Any:
        self._stack: List[Any] = []
        self._metastack: List[List[Any]] = []
        self._memo: dict = {}
        try:
            while True:
                code = self._read(1)[0]
                step = _OPCODES.get(code)
                if step is None:
                    _refuse(f'opcode {bytes([code])!r} is not allowed')
                if step(self) is _STOP:
                    break
        except pickle.UnpicklingError as error:
            raise pickle.UnpicklingError(
                f'{error} (at byte {self._pos} of the pickle)') from None
        except (TypeError, ValueError, IndexError, KeyError, AttributeError,
                OverflowError, RecursionError, struct.error) as error:
            raise pickle.UnpicklingError(
                f'malformed pickle at byte {self._pos}: '
                f'{describe_error(error)}') from None
        if self._unbuilt:
            _refuse(f'{self._unbuilt} object(s) of the pickle were used '
                    'before they were built')
        return self._result

    # reading

    def _read(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            _refuse('the pickle is truncated')
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk

    def _unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _readline(self) -> str:
        end = self._data.find(b'\n', self._pos, self._pos + 256)
        if end < 0:
            _refuse('a global name is not terminated within 256 bytes')
        line = self._data[self._pos:end].decode('utf-8')
        self._pos = end + 1
        return line

    def _push(self, value: Any) -> None:
        self._stack.append(value)

    def _pop(self) -> Any:
        if not self._stack:
            _refuse('stack underflow')
        return self._stack.pop()

    def _top(self) -> Any:
        if not self._stack:
            _refuse('stack underflow')
        return self._stack[-1]

    def _pop_mark(self) -> list:
        if not self._metastack:
            _refuse('no MARK to pop to')
        items, self._stack = self._stack, self._metastack.pop()
        return items

    # opcodes

    @_opcode(pickle.PROTO)
    def _proto(self):
        protocol = self._read(1)[0]
        if protocol != 2:
            _refuse(f'pickle protocol {protocol}: only protocol 2, what '
                    'torch.save writes, is read')

    @_opcode(pickle.STOP)
    def _stop(self):
        self._result = self._pop()
        return _STOP

    @_opcode(pickle.MARK)
    def _mark(self):
        self._metastack.append(self._stack)
        self._stack = []

    @_opcode(pickle.NONE)
    def _none(self):
        self._push(None)

    @_opcode(pickle.NEWTRUE)
    def _true(self):
        self._push(True)

    @_opcode(pickle.NEWFALSE)
    def _false(self):
        self._push(False)

    @_opcode(pickle.BININT)
    def _binint(self):
        self._push(self._unpack('<i'))

    @_opcode(pickle.BININT1)
    def _binint1(self):
        self._push(self._read(1)[0])

    @_opcode(pickle.BININT2)
    def _binint2(self):
        self._push(self._unpack('<H'))

    @_opcode(pickle.LONG1)
    def _long1(self):
        self._push(pickle.decode_long(self._read(self._read(1)[0])))

    @_opcode(pickle.BINFLOAT)
    def _binfloat(self):
        self._push(self._unpack('>d'))

    @_opcode(pickle.BINUNICODE)
    def _binunicode(self):
        self._push(
            str(self._read(self._unpack('<I')), 'utf-8', 'surrogatepass'))

    @_opcode(pickle.EMPTY_TUPLE)
    def _empty_tuple(self):
        self._push(())

    @_opcode(pickle.TUPLE)
    def _tuple(self):
        self._push(tuple(self._pop_mark()))

    @_opcode(pickle.TUPLE1)
    def _tuple1(self):
        self._push((self._pop(), ))

    @_opcode(pickle.TUPLE2)
    def _tuple2(self):
        second = self._pop()
        self._push((self._pop(), second))

    @_opcode(pickle.TUPLE3)
    def _tuple3(self):
        third, second = self._pop(), self._pop()
        self._push((self._pop(), second, third))

    @_opcode(pickle.EMPTY_LIST)
    def _empty_list(self):
        self._push([])

    @_opcode(pickle.EMPTY_DICT)
    def _empty_dict(self):
        self._push({})

    def _list_target(self) -> list:
        target = self._top()
        if type(target) is not list:
            _refuse(f'APPEND to a {_type_name(target)}')
        return target

    @_opcode(pickle.APPEND)
    def _append(self):
        item = self._pop()
        self._list_target().append(item)

    @_opcode(pickle.APPENDS)
    def _appends(self):
        items = self._pop_mark()
        self._list_target().extend(items)

    def _dict_target(self) -> dict:
        target = self._top()
        if type(target) not in (dict, OrderedDict, Counter):
            _refuse(f'SETITEM on a {_type_name(target)}')
        return target

    @_opcode(pickle.SETITEM)
    def _setitem(self):
        value, key = self._pop(), self._pop()
        self._dict_target()[key] = value

    @_opcode(pickle.SETITEMS)
    def _setitems(self):
        items = self._pop_mark()
        if len(items) % 2:
            _refuse('SETITEMS with an odd number of items')
        target = self._dict_target()
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    @_opcode(pickle.BINPUT)
    def _binput(self):
        self._put(self._read(1)[0])

    @_opcode(pickle.LONG_BINPUT)
    def _long_binput(self):
        self._put(self._unpack('<I'))

    def _put(self, key: int) -> None:
        value = self._top()
        self._memo[key] = value
        if type(value) is _Pending:
            value.memo_keys.append(key)

    @_opcode(pickle.BINGET)
    def _binget(self):
        self._get(self._read(1)[0])

    @_opcode(pickle.LONG_BINGET)
    def _long_binget(self):
        self._get(self._unpack('<I'))

    def _get(self, key: int) -> None:
        if key not in self._memo:
            _refuse(f'memo key {key} was never stored')
        value = self._memo[key]
        if type(value) is _Pending:
            _refuse(f'{value.what} is used before it is built')
        self._push(value)

    @_opcode(pickle.GLOBAL)
    def _global(self):
        module = self._readline()
        self._push(self.find_class(module, self._readline()))

    @_opcode(pickle.REDUCE)
    def _reduce(self):
        args, target = self._pop(), self._top()
        if type(target) is not _Global or target.call is None:
            _refuse(f'calling {_brief(target)} is not allowed')
        if type(args) is not tuple:
            _refuse(f'REDUCE arguments must be a tuple, got '
                    f'{_type_name(args)}')
        self._stack[-1] = self._made(target.call(self, *args))

    @_opcode(pickle.NEWOBJ)
    def _newobj(self):
        args, cls = self._pop(), self._pop()
        if type(cls) is not _Global or cls.new is None:
            _refuse(f'creating {_brief(cls)} is not allowed')
        if type(args) is not tuple:
            _refuse(f'NEWOBJ arguments must be a tuple, got '
                    f'{_type_name(args)}')
        self._push(self._made(cls.new(self, *args)))

    def _made(self, value: Any) -> Any:
        if type(value) is _Pending:
            self._unbuilt += 1
        return value

    @_opcode(pickle.BUILD)
    def _build(self):
        state, inst = self._pop(), self._top()
        if type(inst) is OrderedDict:
            _build_ordered_dict(self, inst, state)
            return
        if type(inst) is not _Pending:
            _refuse(f'setting the state of a {_type_name(inst)} is not '
                    'allowed')
        built = inst.build(self, state)
        self._stack[-1] = built
        for key in inst.memo_keys:
            self._memo[key] = built
        self._unbuilt -= 1

    @_opcode(pickle.BINPERSID)
    def _binpersid(self):
        pid = self._pop()
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == 'storage'
                and (type(pid[1]) is torch.serialization.StorageType
                     or pid[1] is torch.UntypedStorage) and type(pid[2]) is str
                and pid[2].isascii() and pid[2].isdigit() and type(
                    pid[3]) is str and len(pid[3]) <= 64 and _is_int(pid[4])):
            _refuse(f'persistent id {_brief(pid, 100)} is not a storage of '
                    'the file')
        self._push(self.persistent_load(pid))


_STOP = object()


class _Container:
    """A mutable object of the pickle in :func:`check_tuple_nesting`: how
    deep the tuples it holds nest."""

    __slots__ = ('nesting', )

    def __init__(self, nesting: int = 0):
        self.nesting = nesting


def _nesting(value: Union[int, _Container]) -> int:
    return value.nesting if type(value) is _Container else value


# opcodes that add the items above them (to the mark) to the container below
_FILLS = frozenset(('APPEND', 'APPENDS', 'SETITEM', 'SETITEMS', 'ADDITEMS',
                    'BUILD'))
_MAKES_TUPLE = frozenset(('TUPLE', 'TUPLE1', 'TUPLE2', 'TUPLE3'))
# opcodes whose result may be anything made of the items they take
_MAKES_OBJECT = frozenset(('REDUCE', 'NEWOBJ', 'NEWOBJ_EX', 'OBJ', 'INST',
                           'LIST', 'DICT', 'FROZENSET', 'BINPERSID'))


def check_tuple_nesting(file: BinaryIO) -> bool:
    """Refuse a pickle that nests tuples in tuples more than
    :data:`MAX_TUPLE_NESTING` deep, before any reader builds them.

    Reads the pickle at the position of ``file`` (up to its STOP, where it
    leaves the file; True) and walks its opcodes with a model of
    the stack in which a tuple is its nesting depth and anything else a
    :class:`_Container` of the deepest nesting put into it: conservative
    (a call's result counts as deep as its arguments), exact for tuples.
    Malformed pickles are left to the reader, which refuses them (False).
    """
    stack: list = []
    marks: list = []
    memo: dict = {}
    try:
        for op, arg, _ in pickletools.genops(file):
            name = op.name
            if name == 'STOP':
                return True
            if name == 'MARK':
                marks.append(len(stack))
                continue
            if name in ('PUT', 'BINPUT', 'LONG_BINPUT', 'MEMOIZE'):
                memo[len(memo) if name == 'MEMOIZE' else arg] = stack[-1]
                continue
            if name in ('GET', 'BINGET', 'LONG_BINGET'):
                stack.append(memo[arg])
                continue
            if name == 'DUP':
                stack.append(stack[-1])
                continue
            before, fills = op.stack_before, name in _FILLS
            if pickletools.markobject in before:  # fills: container below
                start = marks.pop() - (0 if fills else before.index(
                    pickletools.markobject))
            else:  # fills: the container stays
                start = len(stack) - len(before) + fills
            if start < 0:
                return False  # underflow: the reader refuses it
            taken = stack[start:]
            del stack[start:]
            nesting = max(map(_nesting, taken), default=0)
            if name in _FILLS:
                target = stack[-1]
                if type(target) is _Container:
                    target.nesting = max(target.nesting, nesting)
                continue
            if name in _MAKES_TUPLE or name == 'EMPTY_TUPLE':
                nesting += 1
                if nesting > MAX_TUPLE_NESTING:
                    _refuse(f'it nests tuples more than {MAX_TUPLE_NESTING} '
                            'deep')
                stack.append(nesting)
            elif name in _MAKES_OBJECT or name.startswith('EMPTY_'):
                stack.append(_Container(nesting))
            else:
                stack.extend([0] * len(op.stack_after))
    except (ValueError, IndexError, KeyError):
        pass  # malformed: the reader says where
    return False


def load(file, **kwargs) -> Any:
    """Read one pickle from ``file`` (as ``pickle.load``)."""
    return Unpickler(file, **kwargs).load()
