"""Network definitions, one file per network; each file registers itself on import.

Explicit import list (no directory scan).
"""
from srops.models.archs import (
    amms_arch,  # noqa: F401
    bicubic_arch,  # noqa: F401
    drfn_arch,  # noqa: F401
    edsr_arch,  # noqa: F401
    edsr_cbam_arch,  # noqa: F401
    espcn_arch,  # noqa: F401
    espcn_cbam_arch,  # noqa: F401
    lapsrn_arch,  # noqa: F401
    lapsrn_cbam_arch,  # noqa: F401
    srgan_attention_arch,  # noqa: F401
    srgan_discriminator_arch,  # noqa: F401
    srresnet_arch,  # noqa: F401
    srresnet_cbam_arch,  # noqa: F401
)
