"""Score-network factory: fully convolutional unless attention is asked for."""

import pytest
import torch
from monai.networks.blocks import SpatialAttentionBlock

from ccdf_mri.networks.score import make_score_network


def _attention_blocks(network: torch.nn.Module) -> int:
    return sum(isinstance(m, SpatialAttentionBlock) for m in network.modules())


def test_default_score_network_has_no_attention_anywhere():
    # MONAI's DiffusionModelUNet puts attention in its middle block even with no attention level;
    # the factory must remove it so patch-trained priors apply to any image size.
    assert _attention_blocks(make_score_network(channels=(8, 16, 16))) == 0


def test_attention_levels_are_kept_when_asked_for():
    network = make_score_network(channels=(8, 16, 16), attention_levels=(False, False, True))
    assert _attention_blocks(network) >= 2  # the level's blocks and the middle block


def test_score_network_maps_any_multiple_of_the_stride_to_the_same_shape():
    network = make_score_network(channels=(8, 16, 16)).eval()
    for shape in ((1, 2, 32, 48), (2, 2, 64, 64)):
        x = torch.randn(shape)
        with torch.no_grad():
            out = network(x, torch.full((shape[0],), 10, dtype=torch.long))
        assert out.shape == x.shape


@pytest.mark.parametrize("shape", [(250, 250), (255, 260)])
def test_both_networks_take_any_matrix_size(shape):
    """fastMRI sizes are not multiples of the U-Nets' strides (e.g. widths of 396 after the
    crop): both networks pad inside and return the input's size; on a size that needs no
    padding the score network is exactly MONAI's DiffusionModelUNet."""
    from monai.networks.nets import DiffusionModelUNet

    from ccdf_mri.networks.initializer import make_initializer_network
    from ccdf_mri.networks.score import ScoreUNet

    torch.manual_seed(0)
    score = ScoreUNet(channels=(8, 8, 16), norm_num_groups=4).eval()
    unet = make_initializer_network(channels=(4, 8, 16), strides=(2, 2), num_res_units=0).eval()
    x, t = torch.randn(2, 2, *shape), torch.tensor([3, 400])
    with torch.no_grad():
        assert score(x, t).shape == x.shape and torch.isfinite(score(x, t)).all()
        assert unet(x).shape == x.shape
        aligned = torch.randn(1, 2, 64, 72)
        torch.testing.assert_close(score(aligned, t[:1]), DiffusionModelUNet.forward(score, aligned, t[:1]))
        # the timestep can ride in a third channel (one-tensor TorchScript export)
        packed = torch.cat([aligned, torch.full((1, 1, 64, 72), 400.0)], dim=1)
        torch.testing.assert_close(score(packed), score(aligned, torch.tensor([400])))
