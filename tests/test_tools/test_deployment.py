"""tools/deployment/pytorch2onnx.py as a user runs it: classification
configs (class scores, dynamic batch, a checkpoint's weights) and detection
backbones to ONNX files of standard operators, run by onnxruntime."""
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from mmengine.config import Config

from ..conftest import REPO, run_tool

TOOL = 'tools/deployment/pytorch2onnx.py'
DEMO = 'configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py'
DET_DEMO = ('configs/mask_rcnn/'
            'mask-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py')


def standard_ops_only(path):
    model = onnx.load(path)
    domains = {node.domain for node in model.graph.node}
    assert domains <= {'', 'ai.onnx'}, domains
    return {node.op_type for node in model.graph.node}


def run_onnx(path, images):
    session = onnxruntime.InferenceSession(path,
                                           providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: images.numpy()})


@pytest.fixture(scope='module')
def demo_classifier(tmp_path_factory):
    """The demo classifier with random (seeded) weights, saved as a
    checkpoint."""
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(3)
        model = MODELS.build(Config.fromfile(f'{REPO}/{DEMO}').model).eval()
    path = tmp_path_factory.mktemp('demo') / 'demo.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return model, str(path)


def test_classifier_to_onnx(demo_classifier, tmp_path):
    model, checkpoint = demo_classifier
    out = str(tmp_path / 'demo.onnx')
    result = run_tool(TOOL, DEMO, '--checkpoint', checkpoint, '--out', out,
                      '--shape', '64', '64', '--dynamic-batch', '--verify')
    errors = [
        float(line.rsplit(' ', 1)[1]) for line in result.stdout.splitlines()
        if 'max relative error' in line
    ]
    assert len(errors) == 2 and max(errors) <= 1e-4  # batches 1 and 4
    ops = standard_ops_only(out)
    assert {'Pad', 'Slice', 'Mul', 'Add'} <= ops
    # the checkpoint's weights, any batch size, class scores as PyTorch
    images = torch.randn(3, 3, 64, 64)
    [scores] = run_onnx(out, images)
    with torch.no_grad():
        want = model(images, mode='tensor').numpy()
    assert scores.shape == (3, 6)
    assert np.abs(scores - want).max() <= 1e-4 * np.abs(want).max()


def test_detection_backbone_to_onnx(tmp_path):
    out = str(tmp_path / 'backbone.onnx')
    result = run_tool(TOOL, DET_DEMO, '--backbone-only', '--out', out,
                      '--shape', '96', '128', '--verify')
    assert 'max relative error' in result.stdout
    standard_ops_only(out)
    feature_maps = run_onnx(out, torch.randn(1, 3, 96, 128))
    assert [f.shape
            for f in feature_maps] == [(1, 64, 24, 32), (1, 128, 12, 16),
                                       (1, 256, 6, 8), (1, 512, 3, 4)]


@pytest.mark.parametrize('args, message', [
    ([DET_DEMO], 'is a detector: a whole detector'),
    ([DEMO, '--checkpoint', 'nowhere.pth'
      ], 'checkpoint nowhere.pth does not exist'),
    ([DEMO, '--shape', '0', '64'], '--shape and --batch must be positive'),
])
def test_bad_requests_are_one_error_line(tmp_path, args, message):
    out = tmp_path / 'x.onnx'
    result = run_tool(TOOL, *args, '--out', str(out), check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert 'Traceback' not in result.stderr
    assert not out.exists()


def test_checkpoint_of_another_model_is_refused(demo_classifier, tmp_path):
    _, checkpoint = demo_classifier
    out = tmp_path / 'x.onnx'
    result = run_tool(TOOL,
                      DEMO,
                      '--checkpoint',
                      checkpoint,
                      '--out',
                      str(out),
                      '--cfg-options',
                      'model.backbone.base_channels=32',
                      check=False)
    assert result.returncode != 0
    assert 'do not match' in result.stderr
    assert not out.exists()


def test_model_without_cot_layers_exports_first(tmp_path):
    """A fresh process whose first export is a model without CoT layers
    (mmcot._ext not loaded yet), as benchmark_deploy.py's ResNet-50: the
    ONNX file is written and computes the model."""
    out = tmp_path / 'conv.onnx'
    script = (
        'import sys, torch\n'
        'from mmcot.deployment import export_onnx\n'
        'torch.manual_seed(0)\n'
        'model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), '
        'torch.nn.ReLU()).eval()\n'
        'x = torch.randn(2, 3, 8, 8)\n'
        'export_onnx(model, (x, ), sys.argv[1], dynamic_batch=True)\n'
        'torch.save((x, model(x).detach()), sys.argv[1] + ".pt")\n')
    subprocess.run([sys.executable, '-c', script, str(out)], check=True,
                   cwd=REPO, capture_output=True, timeout=600)
    x, expected = torch.load(str(out) + '.pt')
    [result] = run_onnx(str(out), x)
    np.testing.assert_allclose(result, expected.numpy(), rtol=1e-5,
                               atol=1e-6)
