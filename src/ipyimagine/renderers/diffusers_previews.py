"""Previews while a local model renders: the latents of step k turned into a small picture, with the cheapest
decoder that fits the model.

1. A tiny autoencoder (`AutoencoderTiny`: TAESD, TAESDXL, TAESD3, TAEF1) when `Imagine.preview_decoder` names a local
   folder (or a hub id in the Hugging Face cache).
2. The model's own VAE when it is small (the bundled model: a full decode costs less than a step).
3. A linear map from latent channels to RGB for the common latent spaces (SD 1.x/2.x, SDXL, SD3, FLUX): a C x 3
   matrix and a bias per space. The numbers are the published per-family factors that ComfyUI's previews use
   (comfy/latent_formats.py), which apply to latents as the sampler holds them.
4. Otherwise no preview: the progress bar only, and no error.
"""

from __future__ import annotations

from dataclasses import dataclass

# latent space -> (rows of R, G, B weights, one row per latent channel; bias)
LINEAR_FACTORS = {
    "sd": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0]),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
    "sd3": (
        [
            [-0.0922, -0.0175, 0.0749],
            [0.0311, 0.0633, 0.0954],
            [0.1994, 0.0927, 0.0458],
            [0.0856, 0.0339, 0.0902],
            [0.0587, 0.0272, -0.0496],
            [-0.0006, 0.1104, 0.0309],
            [0.0978, 0.0306, 0.0427],
            [-0.0042, 0.1038, 0.1358],
            [-0.0194, 0.0020, 0.0669],
            [-0.0488, 0.0130, -0.0268],
            [0.0922, 0.0988, 0.0951],
            [-0.0278, 0.0524, -0.0542],
            [0.0332, 0.0456, 0.0895],
            [-0.0069, -0.0030, -0.0810],
            [-0.0596, -0.0465, -0.0293],
            [-0.1448, -0.1463, -0.1189],
        ],
        [0.2394, 0.2135, 0.1925],
    ),
    "flux": (
        [
            [-0.0346, 0.0244, 0.0681],
            [0.0034, 0.0210, 0.0687],
            [0.0275, -0.0668, -0.0433],
            [-0.0174, 0.0160, 0.0617],
            [0.0859, 0.0721, 0.0329],
            [0.0004, 0.0383, 0.0115],
            [0.0405, 0.0861, 0.0915],
            [-0.0236, -0.0185, -0.0259],
            [-0.0245, 0.0250, 0.1180],
            [0.1008, 0.0755, -0.0421],
            [-0.0515, 0.0201, 0.0011],
            [0.0428, -0.0012, -0.0036],
            [0.0817, 0.0765, 0.0749],
            [-0.1264, -0.0522, -0.1103],
            [-0.0280, -0.0881, -0.0499],
            [-0.1262, -0.0982, -0.0778],
        ],
        [-0.0329, -0.0718, -0.0851],
    ),
}
SMALL_VAE_PARAMETERS = 5_000_000  # a VAE this small decodes a preview for less than a step costs


# The published latent spaces by their VAE's config: (latent channels, scaling_factor, shift_factor). Any pipeline whose
# VAE has these numbers lives in that space, whatever its class: Chroma, Z-Image, Lumina 2, HiDream and Bria use
# FLUX's VAE; AuraFlow, HunyuanDiT and PixArt-Sigma SDXL's; PixArt-alpha SD's.
SPACES = ((4, 0.18215, None, "sd"), (4, 0.13025, None, "sdxl"), (16, 1.5305, 0.0609, "sd3"), (16, 0.3611, 0.1159, "flux"))


def latent_space(pipe) -> str | None:
    """Which published latent space a pipeline's latents live in (None: no linear factors known), read from its VAE's
    channels and scaling and shift factors; a VAE with default factors (a fine-tune's, a test's) by the pipeline's kind."""
    name = type(pipe).__name__
    vae = getattr(pipe, "vae", None)
    config = getattr(vae, "config", None)
    channels = getattr(config, "latent_channels", None)
    if type(vae).__name__ != "AutoencoderKL":
        return None  # DC-AE, MoVQ, Qwen's and FLUX.2's own VAEs: other spaces
    scale, shift = getattr(config, "scaling_factor", None), getattr(config, "shift_factor", None)
    for space_channels, space_scale, space_shift, space in SPACES:
        if channels == space_channels and _near(scale, space_scale) and (_near(shift, space_shift) if space_shift else not shift):
            if space == "sd" and name.startswith("StableDiffusionXL"):
                break  # SDXL with the default factor of a test or converted config: by its kind below
            return space
    if name.startswith("StableDiffusionXL") and channels == 4:
        return "sdxl"
    if name.startswith("StableDiffusion3") and channels == 16:
        return "sd3"
    if name.startswith(("Flux", "Chroma")) and not name.startswith("Flux2") and channels == 16:
        return "flux"
    if channels == 4 and getattr(pipe, "unet", None) is not None:
        return "sd"  # SD 1.x/2.x and their LCM and turbo distillations
    return None


def _near(value, target: float) -> bool:
    return isinstance(value, (int, float)) and abs(value - target) < 1e-3


@dataclass
class PreviewDecoder:
    """Turns the latents of one step into a small RGB picture."""

    kind: str  # "tiny", "vae" or "linear"
    pipe: object
    decoder: object = None  # the AutoencoderTiny, for kind "tiny"
    factors: object = None  # (C x 3 tensor, bias), for kind "linear"

    def __call__(self, latents, width: int | None, height: int | None):
        import torch
        from PIL import Image

        latents = self._unpacked(latents, width, height)[:1].float()
        with torch.inference_mode():
            if self.kind == "linear":
                weights, bias = self.factors
                rgb = torch.einsum("bchw,cr->brhw", latents, weights) + bias[None, :, None, None]
            elif self.kind == "tiny":
                rgb = self.decoder.decode(latents.to(self.decoder.dtype)).sample.float()
            else:
                vae = self.pipe.vae
                scaled = latents / getattr(vae.config, "scaling_factor", 1.0)
                rgb = vae.decode(scaled.to(vae.dtype), return_dict=False)[0].float()
        pixels = ((rgb[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        image = Image.fromarray(pixels)
        if width and height and image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        return image

    def _unpacked(self, latents, width, height):
        """FLUX and Qwen-Image hold latents as 2x2 packed sequences: back to (batch, channels, h, w)."""
        if latents.ndim == 3 and hasattr(self.pipe, "_unpack_latents"):
            if not (width and height):  # no size asked: the pipeline's own default, as it renders then
                side = getattr(self.pipe, "default_sample_size", None)
                width = height = side * self.pipe.vae_scale_factor if side else None
            if width and height:
                return self.pipe._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)
        return latents


def preview_decoder(pipe, config, small_model: bool = False) -> PreviewDecoder | None:
    """The cheapest decoder that fits this pipeline, or None (progress only)."""
    import torch

    folder = getattr(config, "preview_decoder", "") or ""
    if folder:
        return PreviewDecoder("tiny", pipe, decoder=_tiny_autoencoder(folder, pipe))
    vae = getattr(pipe, "vae", None)
    if vae is not None and type(vae).__name__ == "AutoencoderKL":
        parameters = sum(p.numel() for p in vae.parameters())
        if small_model or parameters <= SMALL_VAE_PARAMETERS:
            return PreviewDecoder("vae", pipe)
    space = latent_space(pipe)
    if space is None:
        return None
    rows, bias = LINEAR_FACTORS[space]
    return PreviewDecoder("linear", pipe, factors=(torch.tensor(rows), torch.tensor(bias)))


def _tiny_autoencoder(source: str, pipe):
    """An AutoencoderTiny from a local folder or the local Hugging Face cache (never downloaded here)."""
    from pathlib import Path

    from diffusers import AutoencoderTiny

    from ..errors import ModelNotFound

    try:
        decoder = AutoencoderTiny.from_pretrained(
            str(Path(source).expanduser()) if Path(source).expanduser().exists() else source, local_files_only=True, use_safetensors=True
        )
    except (OSError, ValueError) as error:
        raise ModelNotFound(
            f"Imagine.preview_decoder {source!r} is not a local AutoencoderTiny folder (or a model in the Hugging "
            f"Face cache): {str(error).splitlines()[0][:120]}"
        ) from None
    return decoder.to(getattr(pipe, "device", "cpu"))
