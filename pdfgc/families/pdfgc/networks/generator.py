"""Modulated generator G (official `ModulateGenerator`): a StyleGAN2 synthesis network at 224x224 whose constant
input is replaced by the appearance identity map and whose every layer reads the same 2590-d style
`[appearance 2048 | mouth 500 | emotion 30 | eye 6 | pose 6]`.

Layers follow rosinality's StyleGAN2 (equalized learning rate, pure-PyTorch upfirdn2d). The unused mapping network,
constant input and `noises.*` buffers of the official file are not built. Unlike the official code, which draws
each NoiseInjection's noise lazily from the global RNG, the noise is a buffer of the model (`*.noise.noise`), so a
model file fully determines its frames.

Two numerically equivalent forms of the modulated convolution are offered (`ModulatedConv2d.fused`):
- `fused=True`: the official one, a per-sample modulated weight applied as a grouped convolution;
- `fused=False`: modulate the input, convolve with the shared weight, demodulate the output (identical maths,
  agreement ~1e-6; lets a batch share one weight, which is what CPUs and bf16 kernels like).

`Generator.forward` is the reference (the official layer order, kept as the oracle); `Generator.render` is the
inference path with the same maths in fewer memory passes: per-sample weights at batch 1, noise+bias precomputed
per layer, in-place activations, and each activation's sqrt(2) gain folded into the next layer's per-channel scale.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _state(t: torch.Tensor) -> tuple:
    """Identity + version of a tensor, for caches derived from it (inference tensors carry no version)."""
    try:
        return (t.data_ptr(), t.device, t.dtype, t._version)
    except RuntimeError:
        return (t.data_ptr(), t.device, t.dtype, -1)


def make_kernel(k) -> torch.Tensor:
    k = torch.tensor(k, dtype=torch.float32)
    if k.dim() == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Zero-insertion upsample, pad, FIR filter (depthwise, flipped kernel); the native upfirdn2d with down=1."""
    b, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(b, c, h, up, w, up)
        y[:, :, :, 0, :, 0] = x
        x = y.view(b, c, h * up, w * up)
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    if pad[0] == pad[1]:  # let the convolution pad: no padded copy of the activations
        return F.conv2d(x, weight, padding=pad[0], groups=c)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, weight, groups=c)


class Blur(nn.Module):
    def __init__(self, kernel, pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * (upsample_factor ** 2)
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel, factor: int = 2):
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel) * (factor ** 2)
        self.register_buffer("kernel", k)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (weights stored N(0,1)/lr_mul, scaled at run time)."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale = (1 / math.sqrt(cin)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)

    def cached(self, x: torch.Tensor, static: int = 0) -> torch.Tensor:
        """forward() with the scaled weight kept between calls (inference).

        `static`: the first `static` inputs are the same for every row and every call of a video (the appearance
        part of the style); their product is computed once, so each frame reads only the moving part's weights."""
        key = (_state(self.weight), _state(self.bias))
        cache = getattr(self, "_scaled", None)
        if cache is None or cache[0] != key:
            self._scaled = cache = (key, (self.weight.detach() * self.scale, self.bias.detach() * self.lr_mul), {})
        w, b = cache[1]
        if not static or not bool((x[:, :static] == x[:1, :static]).all()):
            return F.linear(x, w, b)
        parts = cache[2]
        head = x[0, :static]
        if parts.get("k") != static or not torch.equal(parts["head"], head):
            parts.update(k=static, head=head.clone(), base=F.linear(head, w[:, :static], b),
                         tail=w[:, static:].contiguous())
        return parts["base"] + F.linear(x[:, static:], parts["tail"])


class ModulatedConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel, self.out_channel = cin, cout
        self.upsample = upsample
        self.demodulate = demodulate
        self.fused = True
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(cin * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1)

    def prepared_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scale*W (out,in,k,k), its transpose (in,out,k,k) for the upsampling conv, sum_k (scale*W)^2 (out,in)),
        fp32, cached until the weight changes: per frame only the style-dependent factors are computed.
        (Modulating in fp32 and letting autocast cast is faster than a bf16 broadcast over the trailing 3x3.)"""
        w = self.weight
        key = _state(w)
        cache = getattr(self, "_prepared", None)
        if cache is None or cache[0] != key:
            ws = (self.scale * w[0].detach()).float()
            self._prepared = cache = (key, (ws.contiguous(), ws.transpose(0, 1).contiguous(), ws.pow(2).sum([2, 3])),
                                      {})
        return cache[1]

    def shared_weight(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The unmodulated scale*W (and its transpose) in `dtype`, cached: the activation-modulated form convolves
        with it unchanged, so autocast need not cast it every frame."""
        w, w_t, _ = self.prepared_weights()
        casts = self._prepared[2]
        if dtype not in casts:
            casts[dtype] = (w.to(dtype), w_t.to(dtype))
        return casts[dtype]

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.modulation(style)  # (B, in)
        if self.fused:
            return self._forward_grouped(x, s)
        return self._forward_shared(x, s)

    def _forward_grouped(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, cin, h, w = x.shape
        k = self.kernel_size
        weight = self.scale * self.weight * s.view(b, 1, cin, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps).view(b, self.out_channel, 1, 1, 1)
        weight = weight.view(b * self.out_channel, cin, k, k)
        x = x.reshape(1, b * cin, h, w)
        if self.upsample:
            weight = (weight.view(b, self.out_channel, cin, k, k).transpose(1, 2)
                      .reshape(b * cin, self.out_channel, k, k))
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            out = out.view(b, self.out_channel, out.shape[-2], out.shape[-1])
            return self.blur(out)
        out = F.conv2d(x, weight, padding=self.padding, groups=b)
        return out.view(b, self.out_channel, out.shape[-2], out.shape[-1])

    def _forward_shared(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        weight = self.scale * self.weight[0]  # (out, in, k, k)
        x = x * s[:, :, None, None].to(x.dtype)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), padding=0, stride=2)
        else:
            out = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # sum_{in,kh,kw} (scale W s)^2 = (sum_{kh,kw} (scale W)^2) @ s^2
            d = torch.rsqrt(s.float().pow(2) @ weight.float().pow(2).sum([2, 3]).t() + self.eps)
            out = out * d[:, :, None, None].to(out.dtype)
        if self.upsample:
            out = self.blur(out)
        return out


DECONV_CHANNELS_LAST = True


def _modulated_conv_fast(conv: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor, gain: float,
                         static: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """conv(gain * x) without materialising gain * x. Returns (out, per-channel output scale or None)."""
    b, cin = x.shape[:2]
    w, w_t, w_sq = conv.prepared_weights()
    with torch.autocast(x.device.type, enabled=False):  # styles and demodulation stay fp32 under autocast
        s = conv.modulation.cached(style.float(), static)  # (B, in)
        d = torch.rsqrt(s.pow(2) @ w_sq.t() + conv.eps) if conv.demodulate else torch.ones_like(s[:, :1])
        d = d * gain  # (B, out) or (B, 1)
    if b == 1 and x[0].numel() >= w.numel():
        # one sample with more activations than weights (the 56-224 px layers): modulate/demodulate the weight
        # itself, in one pass over the weight instead of two over the activations
        m = s[0][None, :] * d[0][:, None]  # (out, in)
        if conv.upsample:
            # oneDNN's transposed convolution and the depthwise blur are faster channels-last (same values)
            if DECONV_CHANNELS_LAST:
                x = x.contiguous(memory_format=torch.channels_last)
            out = F.conv_transpose2d(x, w_t * m.t()[:, :, None, None], padding=0, stride=2)
            return conv.blur(out).contiguous(), None
        return F.conv2d(x, w * m[:, :, None, None], padding=conv.padding), None
    # small activations or a batch: modulate the input, convolve with the shared weight, demodulate the output
    # (returned as a per-channel scale for the caller's epilogue; the depthwise blur commutes with it)
    amp = torch.is_autocast_enabled(x.device.type)
    w_c, w_tc = conv.shared_weight(torch.get_autocast_dtype(x.device.type) if amp else w.dtype)
    xs = x * s[:, :, None, None].to(x.dtype)
    d = d.expand(b, conv.out_channel)
    if conv.upsample:
        return conv.blur(F.conv_transpose2d(xs, w_tc, padding=0, stride=2)), d
    return F.conv2d(xs, w_c, padding=conv.padding), d


class NoiseInjection(nn.Module):
    """out = x + weight * noise, with one fixed (1,1,H,W) noise map shared by every frame (see module doc)."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.register_buffer("noise", torch.randn(1, 1, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight.to(x.dtype) * self.noise.to(x.dtype)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = 2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype), self.negative_slope) * self.scale


class StyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, style_dim: int, size: int, upsample: bool = False,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, kernel_size, style_dim, True, upsample, blur_kernel)
        self.noise = NoiseInjection(size)
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style)))

    def _noise_plus_bias(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """weight*noise + bias as one (1,C,H,W) map, cached until a parameter changes."""
        key = (dtype, device, _state(self.noise.noise), _state(self.noise.weight), _state(self.activate.bias))
        cache = getattr(self, "_nb_cache", None)
        if cache is None or cache[0] != key:
            nb = (self.noise.weight * self.noise.noise + self.activate.bias).to(device=device, dtype=dtype)
            self._nb_cache = cache = (key, nb.contiguous())
        return cache[1]

    def render(self, x: torch.Tensor, style: torch.Tensor, gain: float, static: int = 0) -> torch.Tensor:
        """forward(gain * x) / sqrt(2): the caller folds the returned activation's sqrt(2) into the next layer."""
        out, d = _modulated_conv_fast(self.conv, x, style, gain, static)
        nb = self._noise_plus_bias(out.dtype, out.device)
        if d is None:
            out = out.add_(nb)
        else:
            out = torch.addcmul(nb, out, d[:, :, None, None].to(out.dtype))
        return F.leaky_relu_(out, self.activate.negative_slope)


class ToRGB(nn.Module):
    def __init__(self, cin: int, style_dim: int, upsample: bool = True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out

    def render(self, x: torch.Tensor, style: torch.Tensor, gain: float, skip: torch.Tensor | None = None,
               static: int = 0) -> torch.Tensor:
        out, d = _modulated_conv_fast(self.conv, x, style, gain, static)
        if d is not None:
            out = out * d[:, :, None, None].to(out.dtype)
        # the 3-channel skip path stays fp32 under autocast: it accumulates every resolution's colour
        with torch.autocast(x.device.type, enabled=False):
            out = out.float() + self.bias.float()
            if skip is not None:
                out = out + self.upsample(skip.float())
        return out


OFFICIAL_CHANNELS = {7: 512, 14: 512, 28: 512, 56: 512, 112: 256, 224: 128}


class Generator(nn.Module):
    """(style (B,S), identity map (B,C0,s0,s0)) -> image (B,3,size,size) in [-1,1]."""

    def __init__(self, size: int = 224, style_dim: int = 2590, channels: dict[int, int] | None = None,
                 init_size: int = 7, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        channels = dict(channels or OFFICIAL_CHANNELS)
        self.size, self.style_dim, self.init_size = size, style_dim, init_size
        self.channels = channels
        self.conv1 = StyledConv(channels[init_size], channels[init_size], 3, style_dim, init_size,
                                blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(channels[init_size], style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        res, cin = init_size, channels[init_size]
        while res < size:
            res *= 2
            cout = channels[res]
            self.convs.append(StyledConv(cin, cout, 3, style_dim, res, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(cout, cout, 3, style_dim, res, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(cout, style_dim))
            cin = cout
        if res != size:
            raise ValueError(f"size {size} is not init_size {init_size} times a power of two")

    @property
    def identity_channels(self) -> int:
        return self.channels[self.init_size]

    def clear_caches(self) -> None:
        """Drop the inference caches (derived weights, noise+bias maps); call after changing weights in place
        under inference mode, where tensors carry no version counter to invalidate them."""
        for m in self.modules():
            for attr in ("_prepared", "_scaled", "_nb_cache"):
                if hasattr(m, attr):
                    delattr(m, attr)

    def noise_layers(self) -> list[NoiseInjection]:
        return [self.conv1.noise] + [c.noise for c in self.convs]

    @torch.no_grad()
    def render(self, style: torch.Tensor, identity: torch.Tensor, static: int = 0, per_sample_from: int = 56
               ) -> torch.Tensor:
        """Inference path: forward's maths with fewer passes over the activations (see module doc).

        `static`: leading style dimensions that stay the same over a video (the appearance code); their share of
        every layer's modulation is computed once."""
        r2 = 2 ** 0.5
        out = self.conv1.render(identity, style, 1.0, static)
        skip = self.to_rgb1.render(out, style, r2, static=static)
        # small layers run as one batch (one shared-weight GEMM amortises the per-call overhead); from
        # `per_sample_from` px on, each sample runs alone with its own modulated weights (cheaper per frame there)
        res, i = self.init_size, 0
        while i < len(self.to_rgbs) and (res * 2 <= per_sample_from or style.shape[0] == 1):
            out = self.convs[2 * i].render(out, style, r2, static)
            out = self.convs[2 * i + 1].render(out, style, r2, static)
            skip = self.to_rgbs[i].render(out, style, r2, skip, static)
            res, i = res * 2, i + 1
        if i == len(self.to_rgbs):
            return torch.tanh(skip)
        frames = []
        for j in range(style.shape[0]):
            o, sk, st = out[j:j + 1], skip[j:j + 1], style[j:j + 1]
            for k in range(i, len(self.to_rgbs)):
                o = self.convs[2 * k].render(o, st, r2, static)
                o = self.convs[2 * k + 1].render(o, st, r2, static)
                sk = self.to_rgbs[k].render(o, st, r2, sk, static)
            frames.append(torch.tanh(sk))
        return torch.cat(frames)

    def forward(self, style: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        out = self.conv1(identity, style)
        skip = self.to_rgb1(out, style)
        for i, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * i](out, style)
            out = self.convs[2 * i + 1](out, style)
            skip = to_rgb(out, style, skip)
        return torch.tanh(skip)
