"""Toy jobs for tests/test_executor.py, in a module of their own: a spawned worker imports a job by its
module's name."""

import hashlib
from pathlib import Path


def train_tiny_model(seed: int, width: int = 64, steps: int = 5) -> dict:
    """A few SGD steps of a small MLP and one large matrix product: float sums whose rounding depends on the thread
    count. Returns digests of the exact bits, and the thread count torch ran on."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(512, width), torch.randn(512, 1)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        optimiser.step()
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    square = torch.randn(768, 768)
    reduction = (square @ square).sum()
    return {"threads": torch.get_num_threads(),
            "weights": hashlib.sha256(weights.numpy().tobytes()).hexdigest(),
            "reduction": reduction.item()}


def touch(path: str) -> str:
    Path(path).write_text("done\n")
    return path


def fail(message: str) -> None:
    raise ValueError(message)
