"""ACmix: self-attention and convolution sharing one set of 1x1 projections.

Pan et al., "On the Integration of Self-Attention and Convolution", CVPR 2022
(official code: LeapLabTHU/ACmix). This version keeps the official parameter names and shapes,
so an official state dict loads with ``strict=True``, and computes the same numbers as the common
``ReflectionPad2d`` + ``nn.Unfold`` formulation (a test reference, ``tests/common_copies.py``) without
materialising its k_att^2 shifted copies of q, k, v: the window attention loops over the k_att^2
offsets on slices of one padded map, and a custom autograd function recomputes the per-offset
products in backward instead of storing them. The convolution path folds ``fc`` into
``dep_conv`` (both linear) and runs one grouped convolution. Tracing and export (ONNX,
torch.export) take a graph of a few large plain ops (row bands of matmuls), torch.compile a
per-offset plain form that inductor fuses; both compute the same numbers.
"""

from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_attention

__all__ = ["ACmix", "acmix", "local_window_attention", "reflect_pad2d"]

Size = Union[int, torch.Tensor]  # a tensor while tracing, so exported graphs keep dynamic H, W

# Elements of one (chunk, head_dim, H, W) slab processed per step on CPU. Chunks are kept large
# because every op is one OpenMP parallel region, and on a busy machine each region waits for a
# descheduled thread (one-slab chunks, ~6000 regions at (4, 128, 80, 80), ran 10-30x slower under
# load), yet small enough that the k_att^2 passes over a chunk stay in cache: on 2 cores 2^19
# (two dark3 heads of YOLOX-s) ran the forward about 25 % faster than 2^22, idle and loaded alike,
# with the same forward+backward time; row strips below one head lost to per-op overhead.
_CPU_CHUNK_ELEMENTS = 1 << 19


def _exporting() -> bool:
    """True while recording a graph for a file (tracing, ONNX, torch.export), not for torch.compile."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def _reflect_index(n: Size, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of every position of a ``pad``-padded axis of length ``n`` (generalised reflection).

    The mirror keeps reflecting, i.e. the index map has period 2(n-1) (n = 1 maps everything to 0),
    which equals ``ReflectionPad`` whenever n > pad and stays defined for any n >= 1.
    """
    idx = torch.arange(-pad, n + pad, device=device)
    if not isinstance(n, (int, torch.Tensor)):  # exported (SymInt) size: ONNX needs tensor operands
        n = torch.scalar_tensor(n, dtype=torch.long, device=device)
    if isinstance(n, torch.Tensor):  # traced or exported size: keep the period in the graph
        period = (2 * (n - 1)).clamp(min=1)
    else:
        period = max(2 * (n - 1), 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - idx, idx)


def reflect_pad2d(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflection-pad the last two dims by ``pad`` for any H, W >= 1 (see ``_reflect_index``).

    Uses ``F.pad(mode="reflect")`` when it applies (H, W > pad, fixed sizes: eager, static exports
    and compiles) and index gathering otherwise (a graph whose size may shrink to <= pad); both
    give identical values where both are defined. In onnxruntime the reflection pad of a static
    graph is one Pad node instead of two Gathers.
    """
    if pad == 0:
        return x
    h, w = x.shape[-2], x.shape[-1]
    fixed = isinstance(h, int) and isinstance(w, int) and not torch.jit.is_tracing()
    if fixed and h > pad and w > pad:
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = x.index_select(-2, _reflect_index(h, pad, x.device))
    return x.index_select(-1, _reflect_index(w, pad, x.device))


def _window(t: torch.Tensor, dy: int, dx: int, span: int) -> torch.Tensor:
    """The (H, W) window of a padded map at offset (dy, dx); ``span`` = padded minus plain size.

    Negative end indices keep the slice independent of H and W, so tracing stays dynamic.
    """
    return t[..., dy:(dy - span) or None, dx:(dx - span) or None]


def _offsets(kernel: int) -> List[Tuple[int, int]]:
    """Window offsets in ``nn.Unfold`` order (row-major over the kernel)."""
    return [(i // kernel, i % kernel) for i in range(kernel * kernel)]


class _LocalWindowAttention(torch.autograd.Function):
    """Softmax attention of every pixel over its k x k window, streamed over the k^2 offsets.

    Forward keeps only the softmax weights (k^2 per pixel and head, float32 or wider) besides its
    inputs; backward recomputes the per-offset products instead of storing k^2 of them. Work is
    chunked over batch*head (see ``_CPU_CHUNK_ELEMENTS``); one chunk on accelerators.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, kp: torch.Tensor, vp: torch.Tensor, kernel: int,
                scale: float) -> torch.Tensor:
        out, attn = _stream_window_attention(q, kp, vp, kernel, scale, keep_weights=True)
        ctx.save_for_backward(q, kp, vp, attn)
        ctx.kernel, ctx.scale = kernel, scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        q, kp, vp, attn = ctx.saved_tensors
        kernel, scale = ctx.kernel, ctx.scale
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        n, d, h, w = q.shape
        span = kernel - 1
        offsets = _offsets(kernel)
        chunk = _chunk_size(q)
        grad_out = grad_out.to(q.dtype).contiguous()
        grad_q = torch.zeros_like(q) if need_q else None
        grad_k = torch.zeros_like(kp) if need_k else None
        grad_v = torch.zeros_like(vp) if need_v else None
        buf = torch.empty(min(chunk, n), d, h, w, device=q.device, dtype=q.dtype)
        for n0 in range(0, n, chunk):
            n1 = min(n0 + chunk, n)
            qc, kc, vc, gc, scratch = q[n0:n1], kp[n0:n1], vp[n0:n1], grad_out[n0:n1], buf[: n1 - n0]
            a = attn[:, n0:n1]
            a_low = a.to(q.dtype).unsqueeze(2)
            grad_a = torch.empty_like(a)
            for o, (dy, dx) in enumerate(offsets):
                torch.mul(gc, _window(vc, dy, dx, span), out=scratch)
                torch.sum(scratch, 1, dtype=attn.dtype, out=grad_a[o])
                if need_v:
                    _window(grad_v[n0:n1], dy, dx, span).addcmul_(a_low[o], gc)
            if not (need_q or need_k):
                continue
            # softmax backward, dL = A * (dA - sum_o A dA), then through the logit scale
            grad_logits = (a * (grad_a - (a * grad_a).sum(0, keepdim=True))).mul_(scale)
            grad_logits = grad_logits.to(q.dtype).unsqueeze(2)
            for o, (dy, dx) in enumerate(offsets):
                if need_q:
                    grad_q[n0:n1].addcmul_(grad_logits[o], _window(kc, dy, dx, span))
                if need_k:
                    _window(grad_k[n0:n1], dy, dx, span).addcmul_(grad_logits[o], qc)
        return grad_q, grad_k, grad_v, None, None


def _stream_window_attention(q: torch.Tensor, kp: torch.Tensor, vp: torch.Tensor, kernel: int, scale: float,
                             keep_weights: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The streamed forward: the output and, if ``keep_weights``, the (k^2, N, H, W) softmax weights
    (float32 or wider) that backward needs; inference skips storing them."""
    n, d, h, w = q.shape
    span = kernel - 1
    offsets = _offsets(kernel)
    chunk = _chunk_size(q)
    acc = _softmax_dtype(q.dtype)
    attn = torch.empty(len(offsets), n, h, w, device=q.device, dtype=acc) if keep_weights else None
    out = torch.zeros_like(q)
    buf = torch.empty(min(chunk, n), d, h, w, device=q.device, dtype=q.dtype)
    for n0 in range(0, n, chunk):
        n1 = min(n0 + chunk, n)
        qc, kc, vc, scratch = q[n0:n1], kp[n0:n1], vp[n0:n1], buf[: n1 - n0]
        logits = torch.empty(len(offsets), n1 - n0, h, w, device=q.device, dtype=acc)
        for o, (dy, dx) in enumerate(offsets):
            torch.mul(qc, _window(kc, dy, dx, span), out=scratch)
            # float32 accumulation: half logits can overflow before the softmax
            torch.sum(scratch, 1, dtype=acc, out=logits[o])
        weights = torch.softmax(logits.mul_(scale), dim=0)
        if attn is not None:
            attn[:, n0:n1] = weights
        weights = weights.to(q.dtype).unsqueeze(2)
        oc = out[n0:n1]
        for o, (dy, dx) in enumerate(offsets):
            oc.addcmul_(weights[o], _window(vc, dy, dx, span))
    return out, attn


def _softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half and bfloat16 (their logits can overflow), the input dtype otherwise."""
    return torch.promote_types(dtype, torch.float32)


def _chunk_size(q: torch.Tensor) -> int:
    """Batch*head rows per step: all at once on accelerators, bounded slabs on CPU."""
    n, d, h, w = q.shape
    if q.device.type != "cpu":
        return max(n, 1)
    return max(1, min(n, _CPU_CHUNK_ELEMENTS // max(d * h * w, 1)))


def _local_window_attention_offsets(q: torch.Tensor, kp: torch.Tensor, vp: torch.Tensor, kernel: int,
                                    scale: float) -> torch.Tensor:
    """Same numbers as ``_LocalWindowAttention`` from per-offset plain ops, for torch.compile.

    Inductor fuses the k^2 products and sums into a few loops over the map (the eager streamed
    path makes separate passes): YOLOX-s's three ACmix modules ran 1.5x faster compiled this way
    than eager (1 thread, batch 1), where the row-band form of the graph path ran 0.7x.
    """
    span = kernel - 1
    offsets = _offsets(kernel)
    logits = torch.stack([(q * _window(kp, dy, dx, span)).sum(1) for dy, dx in offsets], 1)
    weights = torch.softmax(logits.to(_softmax_dtype(q.dtype)) * scale, dim=1).to(q.dtype)
    out = weights[:, 0:1] * _window(vp, 0, 0, span)
    for o, (dy, dx) in enumerate(offsets[1:], start=1):
        out = out + weights[:, o:o + 1] * _window(vp, dy, dx, span)
    return out


# Columns per row segment of the graph path, for maps of a fixed, known width. Its matmuls
# compute a segment's s queries against s + k - 1 keys of a window row, (s + k - 1) / k times the
# window's work, so segments bound that waste on wide maps, while many tiny matmuls cost more.
# In onnxruntime (1 thread, YOLOX-s levels 80/40/20 wide, 7x7 window, 4 heads) 20 ran 52/23/10
# ms per level, against 53/28/15 for 16, 69/27/12 for 24 and 74/24/11 with whole rows.
_BAND_SEGMENT = 20


def _row_segments(t: torch.Tensor, seg: int, n_seg: int, span: int) -> torch.Tensor:
    """(N, R, W', d) -> (N, R, n_seg, seg + span, d): column segments of ``seg``, each with the first
    ``span`` columns of the next (span <= seg), zeros past W'; pads, reshapes and slices only."""
    n, r, wide, d = t.shape
    t = F.pad(t, (0, 0, 0, (n_seg + 1) * seg - wide)).reshape(n, r, n_seg + 1, seg, d)
    return torch.cat([t[:, :, :-1], t[:, :, 1:, :span]], 3)


def _local_window_attention_plain(q: torch.Tensor, kp: torch.Tensor, vp: torch.Tensor, kernel: int,
                                  scale: float) -> torch.Tensor:
    """Same numbers as ``_LocalWindowAttention`` from a few large plain ops, for exported graphs.

    Per window row dy, one matmul gives every query row segment against its key row segment
    widened by k - 1 columns, (s, s + k - 1); query x needs the k entries x..x + k - 1 of that
    band, which a pad and reshape line up as columns ("skewing": rows of length L padded to
    L + 1 shift each next row by one), and its weights go back onto the band the same way. About
    10 nodes per window row instead of 49 slices and products; in onnxruntime 3x faster than
    that 49-offset graph at YOLOX-s sizes.

    Rows are cut into ``_BAND_SEGMENT``-column segments only where the width is a fixed number
    (eager, static exports): torch.export specialises a segment axis or a cropping view on the
    widths where it happens to be 1 or contiguous, so dynamic widths and traces keep whole rows.
    """
    n, d, h, w = q.shape
    span = kernel - 1
    if isinstance(w, int) and not torch.jit.is_tracing() and w > max(_BAND_SEGMENT, span):
        seg, n_seg = _BAND_SEGMENT, -(-w // _BAND_SEGMENT)
    else:
        seg, n_seg = w, 1
    wide = seg + span
    acc = _softmax_dtype(q.dtype)  # half logits can overflow
    qr = q.permute(0, 2, 3, 1).to(acc)  # (N, H, W, d)
    kr = kp.permute(0, 2, 3, 1).to(acc)  # (N', H + span, W + span, d)
    vr = vp.permute(0, 2, 3, 1)
    if n_seg == 1:
        qs, ks, vs = qr.unsqueeze(2), kr.unsqueeze(2), vr.unsqueeze(2)
    else:
        qs = F.pad(qr, (0, 0, 0, n_seg * seg - w)).reshape(n, h, n_seg, seg, d)
        ks, vs = _row_segments(kr, seg, n_seg, span), _row_segments(vr, seg, n_seg, span)
    # qs: (N, H, n_seg, seg, d); ks, vs: (N', H + span, n_seg, wide, d)
    logits = []
    for dy in range(kernel):
        full = torch.matmul(qs, ks[:, dy:dy + h].transpose(-1, -2))  # (N, H, n_seg, seg, wide)
        skewed = F.pad(full.reshape(n, h, n_seg, seg * wide), (0, seg)).reshape(n, h, n_seg, seg, wide + 1)
        logits.append(skewed[..., :kernel])  # entry j of query x: key column x + j
    att = torch.softmax(torch.stack(logits, 4).reshape(n, h, n_seg, seg, kernel * kernel) * scale, dim=-1)
    att = att.to(q.dtype).reshape(n, h, n_seg, seg, kernel, kernel)
    out = None
    for dy in range(kernel):
        band = F.pad(att[..., dy, :], (0, seg)).reshape(n, h, n_seg, seg * (seg + kernel))
        band = band[..., :seg * wide].reshape(n, h, n_seg, seg, wide)  # weight j of x back at column x + j
        part = torch.matmul(band, vs[:, dy:dy + h])  # (N, H, n_seg, seg, d)
        out = part if out is None else out + part
    out = out.reshape(n, h, n_seg * seg, d)
    if n_seg > 1:
        out = out[:, :, :w]
    return out.permute(0, 3, 1, 2)


def local_window_attention(q: torch.Tensor, kp: torch.Tensor, vp: torch.Tensor, kernel: int,
                           scale: float = 1.0, plain: Optional[bool] = None) -> torch.Tensor:
    """``out_u = sum_o softmax_o(scale * q_u . kp_{u+o}) vp_{u+o}`` over a ``kernel``^2 window.

    q: (N, d, H, W); kp, vp: (N', d, H + kernel - 1, W + kernel - 1) with N' in {1, N}, already
    padded; returns (N, d, H, W). ``plain`` forces (True) or forbids (False) the exported graph's
    row-band path; by default it is taken while tracing or exporting, and while torch.compile
    traces a training step; compiled inference traces the per-offset form and eager runs the
    streamed path. When no input needs a gradient, the streamed path runs without autograd and
    keeps no softmax weights.
    """
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or kp.requires_grad or vp.requires_grad)
    if plain is None:
        plain = _exporting()
        if not plain and torch.compiler.is_compiling():
            if not needs_grad:
                return _local_window_attention_offsets(q, kp, vp, kernel, scale)
            # compiled training steps of the per-offset form (autograd through k^2 products) ran
            # 2.5x slower than eager and took 17 minutes to compile; the row bands do not
            plain = True
    if plain:
        return _local_window_attention_plain(q, kp, vp, kernel, scale)
    n = q.shape[0]
    kp = kp.to(q.dtype).expand(n, -1, -1, -1).contiguous()
    vp = vp.to(q.dtype).expand(n, -1, -1, -1).contiguous()
    q = q.contiguous()
    if needs_grad:
        return _LocalWindowAttention.apply(q, kp, vp, kernel, float(scale))
    return _stream_window_attention(q, kp, vp, kernel, float(scale), keep_weights=False)[0]


def _position(h: Size, w: Size, like: torch.Tensor) -> torch.Tensor:
    """(1, 2, h, w): channel 0 is x = linspace(-1, 1, w), channel 1 is y = linspace(-1, 1, h)."""
    if not (isinstance(h, int) and isinstance(w, int)):
        # traced (tensor) or exported (SymInt) sizes: an arange form that exports with dynamic
        # axes, where linspace's would keep the example's length (linspace(-1, 1, 1) = -1)
        def line(n: Size) -> torch.Tensor:
            if isinstance(n, torch.Tensor):
                step = (2.0 / (n - 1).clamp(min=1)).to(like.dtype)
            else:
                step = 2.0 / torch.sym_max(n - 1, 1)
            return torch.arange(n, device=like.device).to(like.dtype) * step - 1

        loc_w, loc_h = line(w), line(h)
    else:
        loc_w = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype)
        loc_h = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype)
    grid_x = loc_w.view(1, -1).expand(loc_h.shape[0], -1)
    grid_y = loc_h.view(-1, 1).expand(-1, loc_w.shape[0])
    return torch.stack([grid_x, grid_y], 0).unsqueeze(0)


def _check_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


class ACmix(nn.Module):
    """ACmix block of Pan et al., "On the Integration of Self-Attention and Convolution", CVPR 2022.

    ``out = rate1 * attention(x) + rate2 * convolution(x)`` where both paths reuse the 1x1
    projections ``q, k, v = conv1(x), conv2(x), conv3(x)``:

    * attention: per head, ``softmax_o(q_u . (k_{u+o} + pe_u - pe_{u+o}) / sqrt(head_dim))``
      over a ``kernel_att`` x ``kernel_att`` window taken from reflection-padded maps, applied to v;
      ``pe = conv_p(xy grid in [-1, 1])``. ``q_u . pe_u`` is constant over the window and cancels
      in the softmax, so the logits are ``q_u . pad(k - pe)_{u+o}``.
    * convolution: ``fc`` (3*head -> kernel_conv^2, no bias) mixes q, k, v per head, then the
      grouped ``dep_conv`` (one-hot shift kernels at init, no bias, as upstream) aggregates;
      computed as one grouped conv whose kernel is ``dep_conv`` composed with ``fc``.

    Parameter names and shapes are the official ones (``conv1..3, conv_p, fc, dep_conv, rate1,
    rate2``). Stride and dilation are fixed at 1; ``kernel_att`` and ``kernel_conv`` must be odd
    (``dep_conv`` pads by ``kernel_conv // 2``, which is upstream's 1 for the default 3).

    Small maps: the official ``ReflectionPad2d`` needs H, W > pad = kernel_att // 2. Here padding
    is a generalised reflection that keeps mirroring (index period 2(n-1), a length-1 axis repeats
    its only value), identical to ``ReflectionPad2d`` whenever H, W > pad and defined for any
    H, W >= 1, so e.g. the stride-32 map of a small input still works.

    Not an identity at initialisation (``identity_at_init = False``): wrap it in a residual gate
    to fine-tune a pretrained neck.
    """

    identity_at_init = False

    def __init__(self, in_planes: int, out_planes: int, kernel_att: int = 7, head: int = 4,
                 kernel_conv: int = 3, stride: int = 1, dilation: int = 1):
        super().__init__()
        _check_int("in_planes", in_planes)
        _check_int("out_planes", out_planes)
        _check_int("head", head)
        _check_int("kernel_att", kernel_att)
        _check_int("kernel_conv", kernel_conv)
        if out_planes % head:
            raise ValueError(f"out_planes={out_planes} (the channel count) must be divisible by head={head}")
        if kernel_att % 2 == 0:
            raise ValueError(f"kernel_att must be odd, got {kernel_att}")
        if kernel_conv % 2 == 0:
            raise ValueError(f"kernel_conv must be odd, got {kernel_conv}")
        if stride != 1:
            raise ValueError(f"stride must be 1 (the neck keeps the map size), got {stride!r}")
        if dilation != 1:
            raise ValueError(f"dilation must be 1 (upstream's unfold ignores it), got {dilation!r}")
        self.in_planes, self.out_planes = in_planes, out_planes
        self.head, self.kernel_att, self.kernel_conv = head, kernel_att, kernel_conv
        self.stride, self.dilation = stride, dilation
        self.head_dim = out_planes // head
        self.padding_att = (dilation * (kernel_att - 1) + 1) // 2

        self.rate1 = nn.Parameter(torch.empty(1))
        self.rate2 = nn.Parameter(torch.empty(1))
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv2 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv_p = nn.Conv2d(2, self.head_dim, kernel_size=1)
        kk = kernel_conv * kernel_conv
        self.fc = nn.Conv2d(3 * head, kk, kernel_size=1, bias=False)
        self.dep_conv = nn.Conv2d(kk * self.head_dim, out_planes, kernel_size=kernel_conv, bias=False,
                                  groups=self.head_dim, padding=kernel_conv // 2, stride=stride)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Upstream init: rate1 = rate2 = 0.5, dep_conv = the kernel_conv^2 one-hot shift kernels."""
        with torch.no_grad():
            self.rate1.fill_(0.5)
            self.rate2.fill_(0.5)
            kc = self.kernel_conv
            shifts = torch.zeros(kc * kc, kc, kc)
            for i in range(kc * kc):
                shifts[i, i // kc, i % kc] = 1.0
            self.dep_conv.weight.copy_(shifts.unsqueeze(0).expand(self.out_planes, -1, -1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        b, c, h, w = q.shape
        nh, hd = self.head, self.head_dim

        # attention path: pad(k) - pad(pe) = pad(k - pe), one padded map instead of two
        pe = self.conv_p(_position(h, w, q)).to(k.dtype)
        k_pad = reflect_pad2d(k.reshape(b * nh, hd, h, w) - pe, self.padding_att)
        v_pad = reflect_pad2d(v.reshape(b * nh, hd, h, w), self.padding_att)
        out_att = local_window_attention(q.reshape(b * nh, hd, h, w), k_pad, v_pad, self.kernel_att,
                                         scale=float(hd) ** -0.5).reshape(b, c, h, w)

        # convolution path: upstream's fc (1x1 over the 3*head maps of each head_dim group) and
        # grouped dep_conv are both linear, so they fold into one grouped conv over the maps
        # ordered (group, q/k/v, head) with kernel sum_j dep_conv[:, j] * fc[j]. This skips
        # upstream's two (B, k_conv^2 * head_dim, H, W) intermediates.
        stacked = torch.stack([t.reshape(b, nh, hd, h, w).transpose(1, 2) for t in (q, k, v)], 2)
        w_conv = torch.einsum("ojyx,jc->ocyx", self.dep_conv.weight, self.fc.weight[:, :, 0, 0])
        out_conv = F.conv2d(stacked.reshape(b, 3 * c, h, w), w_conv.to(stacked.dtype), None,
                            padding=self.kernel_conv // 2, groups=hd)
        return torch.addcmul(self.rate2 * out_conv, self.rate1, out_att)

    def extra_repr(self) -> str:
        return (f"in_planes={self.in_planes}, out_planes={self.out_planes}, kernel_att={self.kernel_att}, "
                f"head={self.head}, kernel_conv={self.kernel_conv}")


@register_attention("acmix", description="ACmix, self-attention and convolution mixed (Pan et al., CVPR 2022; here)")
def acmix(channels: int, kernel_att: int = 7, head: int = 4, kernel_conv: int = 3) -> ACmix:
    """ACmix (Pan et al., CVPR 2022) on a ``channels``-channel map, stride 1."""
    return ACmix(channels, channels, kernel_att=kernel_att, head=head, kernel_conv=kernel_conv)
