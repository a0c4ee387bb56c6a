"""The SR evaluation protocol: MATLAB-exact bicubic resizing, BT.601 luma, PSNR/SSIM.

One convention throughout: RGB float tensors in [0, 1], laid out ``[B, C, H, W]``.

    from srops.image import imresize, quantize, rgb_to_y, psnr, ssim, modcrop, load_image
    hr = modcrop(load_image("data/Set5/baby.png"), 4)   # [1, 3, H, W]
    lr = quantize(imresize(hr, 1 / 4))                    # MATLAB bicubic + uint8 levels
    sr = imresize(lr, 4)
    psnr(sr, hr, crop_border=4), ssim(sr, hr, crop_border=4)   # float64 [B], Y channel
"""
from srops.image.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from srops.image.imresize import imresize, quantize
from srops.image.metrics import psnr, ssim
from srops.image.utils import (
    IMAGE_EXTENSIONS,
    load_image,
    modcrop,
    read_image,
    read_image_and_profile,
    save_image,
    to_uint8,
    write_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "imresize",
    "quantize",
    "rgb_to_y",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "psnr",
    "ssim",
    "modcrop",
    "load_image",
    "read_image",
    "read_image_and_profile",
    "write_image",
    "save_image",
    "to_uint8",
]
