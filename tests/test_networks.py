"""Score-network factory: fully convolutional unless attention is asked for."""

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
