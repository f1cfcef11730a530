"""The demo datasets' generators refuse sizes they cannot draw."""
import pytest

from mmcot.datasets.synthetic_shapes import (make_classification_split,
                                             make_detection_split,
                                             make_segmentation_split)

from .conftest import run_tool


@pytest.mark.parametrize('make, count', [
    (make_classification_split, 'per_class'),
    (make_detection_split, 'num_images'),
    (make_segmentation_split, 'num_images'),
])
@pytest.mark.parametrize('args, name', [
    ((-1, ), '{count}'),
    ((2.5, ), '{count}'),
    ((1, 0), 'size'),
    ((1, 3), 'size'),
    ((1, 2.5), 'size'),
    ((1, 64, -1), 'seed'),
])
def test_bad_sizes_are_refused_by_name(make, count, args, name, tmp_path):
    with pytest.raises(ValueError, match=name.format(count=count) +
                       ' must be an int >= '):
        make(str(tmp_path), 'train', *args)
    assert not list(tmp_path.iterdir())


def test_tool_refuses_a_file_as_its_folder(tmp_path):
    (tmp_path / 'a_file').write_text('')
    result = run_tool('tools/dataset_converters/make_shapes.py', 'cls',
                      str(tmp_path / 'a_file'), check=False)
    assert result.returncode == 2
    assert result.stderr.startswith('error: out ') and (
        'is a file, not a folder' in result.stderr)
    assert 'Traceback' not in result.stderr
