"""Pinned outputs of the tiny PD-FGC model through the whole pipeline (diffusers' habit): any silent numeric
change in the networks, the official rules, the spectrogram or the pipeline's steps fails here. The values were
recorded from this code; a deliberate change must re-record them and say why in its commit."""
from __future__ import annotations

import numpy as np
import torch

from pdfgc.families.pdfgc.testing import tiny_model
from pdfgc.options import AnimateOptions
from pdfgc.pipeline import TalkingHeadPipeline

from .conftest import DATA, need

PD = DATA / "pdfgc"


def test_tiny_model_pipeline_output_is_pinned():
    pipe = TalkingHeadPipeline(tiny_model(0), device="cpu", threads=1)
    wav = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    opt = AnimateOptions(progress=False, pose=str(need(PD / "motions/pose/681600002")), max_frames=4)
    plan = pipe.plan(need(PD / "anne.png"), wav, opt)
    frames = torch.cat([x for _, x in pipe.render(plan, opt)])
    assert plan.num_frames == 4 and frames.shape == (4, 3, 224, 224)
    close = dict(atol=1e-4, rtol=0)
    torch.testing.assert_close(plan.mouth[:2, :4], torch.tensor(
        [[-0.242779, -0.016977, -0.058796, 0.155491], [-0.340452, -0.024852, -0.087076, 0.213878]]), **close)
    torch.testing.assert_close(plan.pose[:2], torch.tensor(
        [[0.124563, -0.082522, -0.038074, -0.082816, -0.205937, -0.032443],
         [0.124692, -0.081041, -0.040292, -0.084071, -0.209311, -0.029858]]), **close)
    torch.testing.assert_close(plan.appearance.vector[0, :4], torch.tensor([0.356179, 0.060918, 0.0, 0.012989]),
                               **close)
    torch.testing.assert_close(frames[0, :, 100, 100:104], torch.tensor(
        [[-0.289623, -0.321019, -0.285500, -0.274969], [0.379539, 0.407199, 0.297196, 0.348162],
         [-0.222825, -0.329863, -0.243821, -0.342382]]), **close)
    assert abs(float(frames.mean()) - -0.139927) < 1e-4 and abs(float(frames.std()) - 0.394193) < 1e-4
