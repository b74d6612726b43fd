"""Lab conversion (super_selfish.color) against scikit-image, the reference implementation."""

import numpy as np
import pytest
import torch

from super_selfish import color

skimage_color = pytest.importorskip("skimage.color")


def test_to_lab_matches_scikit_image():
    torch.manual_seed(0)
    rgb = torch.rand(3, 3, 12, 12)
    ours = color.to_lab(rgb)
    for image, lab in zip(rgb, ours):
        reference = skimage_color.rgb2lab(image.permute(1, 2, 0).numpy().astype(np.float64))
        reference = torch.from_numpy(reference).permute(2, 0, 1).float()
        scaled = torch.cat([reference[:1] / 100.0, (reference[1:] + 128.0) / 255.0])
        assert torch.allclose(lab, scaled, atol=2e-3)


def test_from_lab_inverts_scikit_image_lab():
    torch.manual_seed(1)
    rgb = torch.rand(2, 3, 8, 8)
    reference = np.stack(
        [skimage_color.rgb2lab(im.permute(1, 2, 0).numpy().astype(np.float64)) for im in rgb]
    )
    raw = torch.from_numpy(reference).permute(0, 3, 1, 2).float()
    scaled = torch.cat([raw[:, :1] / 100.0, (raw[:, 1:] + 128.0) / 255.0], dim=1)
    assert torch.allclose(color.from_lab(scaled), rgb, atol=2e-3)
