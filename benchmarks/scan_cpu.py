"""CPU selective scan: the chunked parallel form against a float32 loop over every position.

Run: python benchmarks/scan_cpu.py   (prints one row per shape; ratios are measured side by side)
"""

from __future__ import annotations

import time

import torch

from ssmzoo.ops import selective_scan_chunked


def scan_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The obvious vectorised-over-channels loop over L, float32: the baseline to beat."""
    delta = delta + delta_bias[:, None] if delta_bias is not None else delta
    delta = torch.nn.functional.softplus(delta) if delta_softplus else delta
    state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        state = torch.exp(delta[:, :, t, None] * A) * state + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append((state * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1)
    return y + u * D[:, None] if D is not None else y


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    torch.manual_seed(0)
    shapes = [  # (name, batch, dim, L, N)
        ("GroupMamba-T stage1 quarter, 1 img", 1, 32, 56 * 56, 1),
        ("GroupMamba-T stage3 quarter, 1 img", 1, 87, 14 * 14, 1),
        ("VideoMamba-S image, 1 img", 1, 768, 197, 16),
        ("VideoMamba-S 16 frames, 1 clip", 1, 768, 3137, 16),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'shape':40s} {'loop ms':>10s} {'chunked ms':>11s} {'speed-up':>9s}")
    for name, b, d, length, n in shapes:
        args = dict(u=torch.randn(b, d, length), delta=torch.randn(b, d, length) * 0.5,
                    A=-torch.rand(d, n) - 0.5, B=torch.randn(b, n, length), C=torch.randn(b, n, length),
                    D=torch.randn(d), delta_bias=torch.randn(d) * 0.1, delta_softplus=True)
        t_loop = best_of(lambda: scan_loop(**args))
        t_chunk = best_of(lambda: selective_scan_chunked(**args))
        print(f"{name:40s} {t_loop * 1e3:10.1f} {t_chunk * 1e3:11.1f} {t_loop / t_chunk:8.1f}x")


if __name__ == "__main__":
    main()
