"""Network definitions, one file per network; each file registers itself on import.

Explicit import list (no directory scan).
"""
from srops.models.archs import amms_arch  # noqa: F401
from srops.models.archs import bicubic_arch  # noqa: F401
from srops.models.archs import drfn_arch  # noqa: F401
from srops.models.archs import edsr_arch  # noqa: F401
from srops.models.archs import edsr_cbam_arch  # noqa: F401
from srops.models.archs import espcn_arch  # noqa: F401
from srops.models.archs import espcn_cbam_arch  # noqa: F401
from srops.models.archs import lapsrn_arch  # noqa: F401
from srops.models.archs import lapsrn_cbam_arch  # noqa: F401
from srops.models.archs import srgan_attention_arch  # noqa: F401
from srops.models.archs import srgan_discriminator_arch  # noqa: F401
from srops.models.archs import srresnet_arch  # noqa: F401
from srops.models.archs import srresnet_cbam_arch  # noqa: F401
