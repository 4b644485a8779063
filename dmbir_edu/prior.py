"""The pre-trained 2D prior: VE noise schedule, a denoiser with EDM preconditioning, loading.

Noise model (VE-SDE, Song et al. 2021): x_sigma = x_0 + sigma * xi, xi ~ N(0, I), with
sigma(t) = sigma_min * (sigma_max / sigma_min)^t for t in [0, 1].

The network is trained as a denoiser D(x; sigma) ~ E[x_0 | x_sigma] (Karras et al. 2022,
"EDM" preconditioning). The score follows by Tweedie's formula:

    s(x; sigma) = grad log p_sigma(x) = (D(x; sigma) - x) / sigma^2.

So the same object serves the score-based predictor-corrector sampler of DiffusionMBIR
(``prior.score``) and the Tweedie estimate of DDS (``prior.denoise``).

Explained in: chapter "Score-based diffusion in 2D" (book/03_diffusion_2d.ipynb).
"""
import functools
import json
import math
from pathlib import Path

import torch
from torch import nn

from .fetch import sha256
from .operators import check_number, check_positive_int

WEIGHTS_DIR = Path(__file__).parent / "weights"
SIGMA_DATA = 0.5     # EDM's assumed data standard deviation (data are shifted by -0.5 first)


def sigma_of_t(t, sigma_min, sigma_max):
    """VE-SDE noise level sigma(t) = sigma_min (sigma_max / sigma_min)^t."""
    return sigma_min * (sigma_max / sigma_min) ** t


def ve_sigmas(n_steps, sigma_min, sigma_max):
    """The sampler's decreasing geometric grid sigma_max = sigma_1 > ... > sigma_N = sigma_min, float64."""
    t = torch.linspace(1, 0, n_steps, dtype=torch.float64)
    return sigma_of_t(t, sigma_min, sigma_max)


def check_sigma(sigma):
    """A noise level sigma > 0 and finite: a number, or a tensor of them (checking a tensor on a
    GPU waits for it; the samplers pass numbers)."""
    if not torch.is_tensor(sigma):
        check_number(sigma, "sigma (the noise level)", positive=True)
    elif sigma.is_complex() or not (torch.isfinite(sigma) & (sigma > 0)).all():
        raise ValueError(f"sigma (the noise level) must be finite and > 0, got {sigma}")


def unet(config):
    """The score network: diffusers' UNet2DModel built from a plain dict (stored in the card)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**config)


DEFAULT_UNET = dict(
    sample_size=64, in_channels=1, out_channels=1, layers_per_block=1,
    block_out_channels=(16, 32, 64, 64), norm_num_groups=8, attention_head_dim=32,
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
)


class SlabConvIn(nn.Module):
    """The input convolution of a slab prior (DiffusionBlend-style: k adjacent slices at once).

    The 2D network runs on every slice of the slab (as a batch of B k slices); its first
    convolution gets a second term that sees all k slices: conv_in(x_c) + mix(x_1, ..., x_k)_c.
    ``mix`` starts at zero, so a slab prior starts as the 2D prior on each slice (an exact start
    for fine-tuning) and learns from the neighbours what one slice cannot tell."""

    def __init__(self, conv, k):
        super().__init__()
        self.base, self.k = conv, int(k)
        self.mix = nn.Conv2d(self.k, self.k * conv.out_channels, conv.kernel_size, padding=conv.padding)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, h):
        """conv_in(h) + mix(h seen as B slabs): h is (B k, C_in, H, W), the slabs' slices in order."""
        B = h.shape[0] // self.k
        m = self.mix(h.reshape(B, self.k, *h.shape[-2:]))  # (B, k C, H, W)
        return self.base(h) + m.reshape(B * self.k, -1, *h.shape[-2:])


class BasePrior:
    """What a sampler may use of a 2D prior: the protocol that ``Prior`` (the network),
    ``GaussianPrior`` (an exact denoiser) and wrappers (``WrappedPrior``) all follow.

    Attributes: ``name``; ``image_size`` (slices are image_size x image_size); ``sigma_min``,
    ``sigma_max`` (the VE schedule it was trained for); ``channels`` (1, or k > 1 for a slab prior
    that denoises runs of k adjacent slices); ``device`` (where it computes; noise for it is
    drawn by the sampler). Methods: ``denoise(x, sigma)``, D(x; sigma), which a subclass
    implements; ``score(x, sigma)`` and ``sigmas(n_steps)`` follow from it and the schedule.
    """
    name, channels, device = "prior", 1, torch.device("cpu")

    def denoise(self, x, sigma):
        raise NotImplementedError

    def score(self, x, sigma):
        """Score s(x; sigma) = (D(x; sigma) - x) / sigma^2 (Tweedie's formula)."""
        denoised = self.denoise(x, sigma)                 # checks sigma as given (a number: no GPU wait)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        return (denoised - x) / sigma.reshape(-1, *[1] * (x.dim() - 1)) ** 2

    def sigmas(self, n_steps):
        """The samplers' noise levels: ``ve_sigmas`` from sigma_max down to sigma_min, then 0, as
        a list of n_steps + 1 floats; step i moves from sigmas[i] to sigmas[i + 1]."""
        return ve_sigmas(n_steps, self.sigma_min, self.sigma_max).tolist() + [0.0]


class WrappedPrior(BasePrior):
    """A prior built on another, ``self.prior``: it forwards the attributes of the protocol and
    ``denoise``; subclass it and override ``denoise`` (a counter, a timer)."""

    def __init__(self, prior):
        self.prior = prior
        self.name, self.image_size, self.channels = prior.name, prior.image_size, prior.channels
        self.sigma_min, self.sigma_max = prior.sigma_min, prior.sigma_max

    @property
    def device(self):
        return self.prior.device

    def denoise(self, x, sigma):
        return self.prior.denoise(x, sigma)


# Slices per network call when ``Prior.batch`` is None, by device type. On the CPU a chunk that keeps
# the activations near the caches is fastest: on the 2-core AMD EPYC (AVX2, 1 MiB L2 per core) 16
# slices of 64 x 64 ran 1.3-1.5x faster per slice than 64 (``python -m dmbir_edu.bench`` prints the
# curve on the machine it runs on); a GPU wants as many slices per call as memory allows.
BATCH = {"cpu": 16, "cuda": 256}


def native_bf16(device):
    """True where ``device`` multiplies bf16 natively, so that bf16 autocast makes the network
    faster: a CUDA GPU that supports bf16, or a CPU with AVX512-BF16 or AMX (read from the CPU's
    flags, Linux). On an AVX2-only CPU bf16 is emulated and several times slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags():
    """The CPU's feature flags (the ``flags`` line of /proc/cpuinfo), empty where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
                          []))


class Prior(nn.Module, BasePrior):
    """A 2D denoiser D(x; sigma) on single-channel slices, with the VE schedule it was trained for.

    ``denoise`` and ``score`` take slices shaped ``(B, H, W)`` and a noise level ``sigma`` (a
    float or a ``(B,)`` tensor) and return ``(B, H, W)`` in the input's dtype and device.
    Slices go through the network ``batch`` at a time (None: ``BATCH`` of the device, 16 on a
    CPU), so memory is bounded by the batch, not by the number of slices; the network sees every
    slice on its own, so the batch changes no number. ``autocast``: bf16 autocast on the
    network, None (the default) where the device has native bf16 (``native_bf16``), True or False
    to force it either way.

    Preconditioning (EDM, with the data shifted by -0.5 so it is roughly centred):
    D(x; sigma) = 0.5 + c_skip (x - 0.5) + c_out F(c_in (x - 0.5); c_noise), with
    c_skip = s_d^2 / (sigma^2 + s_d^2), c_out = sigma s_d / sqrt(sigma^2 + s_d^2),
    c_in = 1 / sqrt(sigma^2 + s_d^2), and c_noise the VE time t(sigma) scaled to [0, 999].
    """

    def __init__(self, config=DEFAULT_UNET, sigma_min=0.01, sigma_max=40.0, name="untrained", slab=1):
        super().__init__()
        self.config, self.name = dict(config), name
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.image_size = int(config["sample_size"])
        self.channels = int(slab)          # > 1: a slab prior, runs of ``slab`` adjacent slices (SlabConvIn)
        self.net = unet(self.config)
        if self.channels > 1:
            self.net.conv_in = SlabConvIn(self.net.conv_in, self.channels)
        self.batch = None        # slices per network call (None: BATCH of the device); memory and speed only
        self.autocast = None     # bf16 autocast: None decides by the hardware (native_bf16), True / False force it
        self.speed_up(channels_last=True)

    def speed_up(self, channels_last=True, compile=False):
        """The network path's free speed-ups, measured by ``python -m dmbir_edu.bench``.

        ``channels_last``: NHWC memory layout for the convolutions (on by default: the same
        numbers to float32 round-off, faster on the CPUs measured; see chapter "Making it fast").
        ``compile``: ``torch.compile`` the network (the first call compiles, tens of seconds;
        worth it for long runs only). Returns the prior.
        """
        self.channels_last = bool(channels_last)
        self.net = self.net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        # a plain attribute, not a registered submodule: the state dict keeps the network's own keys
        object.__setattr__(self, "compiled", torch.compile(self.net) if compile else None)
        return self

    @property
    def device(self):
        """The device of the network's weights (``prior.to(device)`` moves them)."""
        return next(self.parameters()).device

    def uses_bf16(self, device=None):
        """Whether the network runs under bf16 autocast on ``device`` (default: the prior's):
        ``autocast`` if set, else ``native_bf16(device)``."""
        return native_bf16(device or self.device) if self.autocast is None else bool(self.autocast)

    def batch_size(self, device=None):
        """Slices per network call on ``device`` (default: the prior's): ``batch``, or ``BATCH``."""
        return self.batch or BATCH.get(torch.device(device or self.device).type, BATCH["cpu"])

    def forward(self, x, sigma):
        """Preconditioned denoiser on (B, 1, H, W) float32 inputs (a slab prior: (B, k, H, W), each
        slice preconditioned as a 2D input and the k slices mixed in ``SlabConvIn``); sigma is (B,)."""
        if x.shape[1] > 1:                                 # a slab prior's runs: B k slices, in order
            B, k = x.shape[:2]
            return self._forward(x.reshape(B * k, 1, *x.shape[-2:]), sigma.repeat_interleave(k)).reshape(x.shape)
        return self._forward(x, sigma)

    def _forward(self, x, sigma):
        s = sigma.reshape(-1, 1, 1, 1)
        c_skip = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2)
        c_out = s * SIGMA_DATA / (s**2 + SIGMA_DATA**2).sqrt()
        c_in = 1 / (s**2 + SIGMA_DATA**2).sqrt()
        t = torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)
        h = c_in * (x - 0.5)
        h = h.contiguous(memory_format=torch.channels_last) if self.channels_last else h
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.uses_bf16(x.device)):
            F = (self.net if self.compiled is None else self.compiled)(h, 999 * t).sample
        return 0.5 + c_skip * (x - 0.5) + c_out * F.float()

    def denoise(self, x, sigma):
        """Tweedie / MMSE estimate D(x; sigma) of the clean slices, x shaped (B, H, W) (a slab prior
        with k channels: (B, k, H, W), runs of k adjacent slices).

        Gradients flow to ``x`` only if it requires them (DPS); ``load_prior`` freezes the weights.
        ``sigma`` must be finite and > 0 (``check_sigma``). An empty batch (B = 0) gives an empty
        result of the same shape, without calling the network.
        """
        check_sigma(sigma)
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"prior {self.name!r} works on {self.image_size}x{self.image_size} slices, "
                             f"got slices of shape {tuple(x.shape[-2:])}")
        wanted = 3 if self.channels == 1 else 4
        if x.dim() != wanted or (self.channels > 1 and x.shape[1] != self.channels):
            raise ValueError(f"prior {self.name!r} takes " + ("(B, H, W) slices" if self.channels == 1 else
                             f"(B, {self.channels}, H, W) slabs of adjacent slices") + f", got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            return torch.empty_like(x)
        p = next(self.parameters())
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=p.device).expand(x.shape[0])
        one = self.channels == 1
        b = self.batch_size(p.device)
        out = [self((xc[:, None] if one else xc).to(p.device, torch.float32), sc)
               for xc, sc in zip(x.split(b), sigma.split(b))]
        return torch.cat(out)[:, 0].to(x.device, x.dtype) if one else torch.cat(out).to(x.device, x.dtype)


def available_priors():
    """Names of the priors shipped in ``dmbir_edu/weights`` (one ``.json`` card + ``.safetensors`` each)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json") if p.with_suffix(".safetensors").exists())


# The shipped prior of each kind of data: the phantom family (the chapters' phantoms, and MRI on
# the MNI152 brain in the phantom-era tables), real CT slices, real MR heads. Cards: weights/NAME.json.
DEFAULT_PRIORS = {"phantom": "phantom64", "ct": "ct64", "mr": "mr64"}


def load_prior(name=None, device="cpu", image_size=None, modality="phantom"):
    """Load a shipped prior offline, checking the weights' sha256 against the card.

    ``name`` None: the default prior of ``modality`` ("phantom", "ct" or "mr"; ``DEFAULT_PRIORS``).
    Weights are safetensors (no pickle is executed). Returns a ``Prior`` in eval mode.
    ``image_size`` runs the fully convolutional network on slices of another size: out of
    distribution (as the paper ran its 320 x 320 knee prior on 240 x 240 brains), so expect
    lower quality; used for the memory benchmark at 128^3. It must be a positive multiple of
    2^(number of resolution levels - 1) (8 for the shipped network), which the network halves
    that many times.
    """
    if name is None:
        if modality not in DEFAULT_PRIORS:
            raise ValueError(f"modality must be one of {sorted(DEFAULT_PRIORS)}, got {modality!r}")
        name = DEFAULT_PRIORS[modality]
    if name not in available_priors():
        raise ValueError(f"unknown prior {name!r}; available: {available_priors()}")
    from safetensors.torch import load_file

    card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    levels = len(card["unet"]["block_out_channels"]) - 1          # the network halves the slices this often
    if image_size is not None and check_positive_int(image_size, "image_size") % 2**levels:
        raise ValueError(f"image_size must be a multiple of {2**levels} (the network halves the slices {levels} "
                         f"times), got {image_size}")
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if sha256(path) != card["sha256"]:
        raise RuntimeError(f"{path} does not match the sha256 in its card")
    prior = Prior(card["unet"], card["sigma_min"], card["sigma_max"], name=name, slab=card.get("slab", 1))
    prior.net.load_state_dict(load_file(path))
    prior.image_size = int(image_size or prior.image_size)
    return prior.eval().requires_grad_(False).to(device)


class GaussianPrior(BasePrior):
    """Known-answer stand-in for the network: data x_0 ~ N(mean, std^2 I), independent pixels.

    Its denoiser is exact: D(x; sigma) = mean + std^2 / (std^2 + sigma^2) (x - mean), so the
    samplers can be checked against analytic means and variances. ``mean`` may be an image (H, W)
    (a prior whose mean differs per pixel of its plane); ``channels`` k > 1 makes it a slab prior
    of k independent slices. The protocol of ``BasePrior``, as ``Prior``.
    """

    def __init__(self, image_size, mean=0.5, std=0.2, sigma_min=0.01, sigma_max=40.0, channels=1):
        self.image_size, self.mean, self.std, self.channels = image_size, mean, std, channels
        self.sigma_min, self.sigma_max, self.name = sigma_min, sigma_max, "gaussian"

    def denoise(self, x, sigma):
        check_sigma(sigma)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, *[1] * (x.dim() - 1))
        return self.mean + self.std**2 / (self.std**2 + sigma**2) * (x - self.mean)
