"""Optional PyTorch: imported only when a CNN or Grad-CAM is used."""

from __future__ import annotations

from ..errors import MissingDependencyError

INSTALL_HINT = ("PyTorch is needed for the CNN and Grad-CAM: install it with "
                "`pip install 'xlabel[deep]'` (CPU build: `pip install torch==2.13.0 "
                "--index-url https://download.pytorch.org/whl/cpu`)")


def require_torch():
    """Return the ``torch`` module, or raise :class:`MissingDependencyError` saying what to install."""
    try:
        import torch
    except ImportError as err:
        raise MissingDependencyError(INSTALL_HINT) from err
    return torch
