"""What mmcot's command-line tools share: a user's mistake on the command
line ends the tool with one ``error: ...`` line, before any work is done."""
import argparse
import os
import os.path as osp
from typing import NoReturn, Optional

from mmengine.config import DictAction


class ToolArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` answering a bad command line with one
    ``error: ...`` line and exit status 2, instead of the usage block and
    ``PROG: error: ...`` (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'error: {message} (see --help)\n')


class CfgOptionsAction(DictAction):
    """MMEngine's ``DictAction`` (``--cfg-options key=value ...``), with a
    parser error for an item without ``=``, which it takes apart blindly."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values if isinstance(values, list) else [values]:
            if '=' not in item:
                parser.error(f'argument {option_string}: expected KEY=VALUE '
                             f'pairs, got {item!r}')
        super().__call__(parser, namespace, values, option_string)


def output_file_problem(path: str, option: str) -> Optional[str]:
    """Why ``path`` (given with ``option``), a file a tool writes when its
    work is done, could not be written then: a folder, or a file in a
    folder that does not exist or is not writable; None if it could."""
    folder = osp.dirname(osp.abspath(path))
    if osp.isdir(path):
        return f'{option} {path} is a folder, not a file name'
    if not osp.isdir(folder):
        return f'{option} {path}: the folder {folder} does not exist'
    if not os.access(folder, os.W_OK | os.X_OK):
        return f'{option} {path}: the folder {folder} is not writable'
    return None


def check_output_file(parser: argparse.ArgumentParser, path: Optional[str],
                      option: str) -> None:
    """``parser.error`` at once with :func:`output_file_problem`, if any."""
    problem = None if path is None else output_file_problem(path, option)
    if problem:
        parser.error(problem)


def check_device(parser: argparse.ArgumentParser, device: str) -> None:
    """``parser.error`` at once unless ``--device`` names a device type that
    torch knows (``cpu``, ``cuda``, ``cuda:1``, ...) and that is here."""
    import torch
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        parser.error(f'--device {device!r}: expected cpu, cuda or cuda:N')
    if kind == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {device}: no GPU is visible')
    if kind not in ('cpu', 'cuda'):
        parser.error(f'--device {device}: only cpu and cuda are measured')
