"""Checkpoints written by hand, as an attacker would: protocol-2 pickle
opcodes assembled one by one and stored in torch.save's zip layout.

A value is written by :func:`emit`: Python primitives, tuples, lists and
dicts as the pickler writes them, and the nodes below for what only a
crafted file does (any global, any call, any state).
"""
import io
import struct
import zipfile
from typing import Any, Dict, NamedTuple, Optional


class Global(NamedTuple):
    module: str
    name: str


class Call(NamedTuple):
    """REDUCE: ``func(*args)``."""
    func: Any
    args: tuple


class New(NamedTuple):
    """NEWOBJ: ``cls.__new__(cls, *args)``."""
    cls: Any
    args: tuple = ()


class Build(NamedTuple):
    """BUILD: ``obj`` with ``state`` set."""
    obj: Any
    state: Any


class Put(NamedTuple):
    """``value``, remembered under memo key ``key``."""
    value: Any
    key: int


class Ref(NamedTuple):
    """The value remembered under memo key ``key``."""
    key: int


class Storage(NamedTuple):
    """A persistent id naming storage ``key`` of the archive."""
    storage_type: str  # e.g. 'FloatStorage'
    key: str
    numel: int
    location: str = 'cpu'


class Raw(NamedTuple):
    """Opcodes written as they are."""
    data: bytes


def emit(out: bytearray, value: Any) -> None:
    """Append the opcodes that push ``value``."""
    if isinstance(value, Raw):
        out += value.data
    elif isinstance(value, Global):
        out += b'c' + f'{value.module}\n{value.name}\n'.encode()
    elif isinstance(value, Call):
        emit(out, value.func)
        emit(out, tuple(value.args))
        out += b'R'
    elif isinstance(value, New):
        emit(out, value.cls)
        emit(out, tuple(value.args))
        out += b'\x81'
    elif isinstance(value, Build):
        emit(out, value.obj)
        emit(out, value.state)
        out += b'b'
    elif isinstance(value, Put):
        emit(out, value.value)
        out += b'r' + struct.pack('<I', value.key)
    elif isinstance(value, Ref):
        out += b'j' + struct.pack('<I', value.key)
    elif isinstance(value, Storage):
        emit(out, ('storage', Global('torch', value.storage_type), value.key,
                   value.location, value.numel))
        out += b'Q'
    elif value is None:
        out += b'N'
    elif value is True:
        out += b'\x88'
    elif value is False:
        out += b'\x89'
    elif isinstance(value, int):
        if -2**31 <= value < 2**31:
            out += b'J' + struct.pack('<i', value)
        else:
            data = value.to_bytes((value.bit_length() + 8) // 8,
                                  'little',
                                  signed=True)
            out += b'\x8a' + bytes([len(data)]) + data
    elif isinstance(value, float):
        out += b'G' + struct.pack('>d', value)
    elif isinstance(value, str):
        data = value.encode('utf-8', 'surrogatepass')
        out += b'X' + struct.pack('<I', len(data)) + data
    elif isinstance(value, bytes):
        # as protocol 2 pickles bytes
        emit(
            out,
            Call(Global('_codecs', 'encode'),
                 (value.decode('latin1'), 'latin1')))
    elif isinstance(value, tuple):
        out += b'('
        for item in value:
            emit(out, item)
        out += b't'
    elif isinstance(value, list):
        out += b']('
        for item in value:
            emit(out, item)
        out += b'e'
    elif isinstance(value, dict):
        out += b'}('
        for key, item in value.items():
            emit(out, key)
            emit(out, item)
        out += b'u'
    else:
        raise TypeError(f'cannot emit {type(value).__name__}')


def pickle_bytes(value: Any) -> bytes:
    """A protocol-2 pickle of ``value``."""
    out = bytearray(b'\x80\x02')
    emit(out, value)
    return bytes(out + b'.')


def write_torch_zip(path: str,
                    data_pkl: bytes,
                    storages: Optional[Dict[str, bytes]] = None,
                    extra_records: Optional[Dict[str, bytes]] = None) -> str:
    """A zip archive in torch.save's layout (``archive/data.pkl``,
    ``archive/data/<key>``, ``archive/version``)."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
        archive.writestr('archive/data.pkl', data_pkl)
        archive.writestr('archive/byteorder', 'little')
        for key, data in (storages or {}).items():
            archive.writestr(f'archive/data/{key}', data)
        for name, data in (extra_records or {}).items():
            archive.writestr(f'archive/{name}', data)
        archive.writestr('archive/version', '3\n')
    return path


def float_tensor(values, key='0') -> Call:
    """A float32 tensor of ``values`` on storage ``key``."""
    return Call(Global('torch._utils', '_rebuild_tensor_v2'),
                (Storage('FloatStorage', key, len(values)), 0, (len(values), ),
                 (1, ), False, Call(Global('collections', 'OrderedDict'), ())))


def float_storage(values) -> bytes:
    return struct.pack(f'<{len(values)}f', *values)


def torch_zip_bytes(value: Any, storages=None) -> bytes:
    buffer = io.BytesIO()
    write_torch_zip(buffer, pickle_bytes(value), storages)
    return buffer.getvalue()
