"""SecondOrderAttention.from_state_dict(layout="san") builds SAN's exact statistic: eps = 0 (SAN adds none)."""
from __future__ import annotations

import pytest
import torch

from srops import SecondOrderAttention, _ext
from tests.nn.test_compat import PeerSOCA, randomise

BACKENDS = ["reference"] + (["cpu"] if _ext.HAS_EXT else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_from_san_state_dict_has_no_eps(backend):
    peer = randomise(PeerSOCA(32, 16)).double()
    m = SecondOrderAttention.from_state_dict(peer.state_dict(), backend=backend).double()
    assert m.eps == 0.0
    x = torch.randn(2, 32, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), peer(x))


def test_from_san_state_dict_statistic_is_eps_free():
    """A tiny-variance map, where eps = 1e-5 would change SAN's statistic: eps = 0 still matches SAN."""
    peer = randomise(PeerSOCA(16, 4)).double()
    x = 1e-4 * torch.randn(2, 16, 6, 5, dtype=torch.float64)  # tr Σ ~ 1.6e-7, far below 1e-5
    m = SecondOrderAttention.from_state_dict(peer.state_dict(), backend="reference").double()
    torch.testing.assert_close(m(x), peer(x))
    with_eps = SecondOrderAttention.from_state_dict(peer.state_dict(), eps=1e-5, backend="reference").double()
    assert with_eps.eps == 1e-5  # an explicit eps wins
    err0, err_eps = (m(x) - peer(x)).abs().max(), (with_eps(x) - peer(x)).abs().max()
    assert err_eps > 100 * err0, (err_eps, err0)
