"""PyTorch eager twins of mcl networks, for `launch/benchmark_train.py`.

  python launch/torch_twin.py gtzan 16 30

Builds the twin of "gtzan" (the GTZAN backbone, `mcl.models.ConvClassifier`
at `configs/gtzan.py`'s widths: standardised input, 3x3 conv + ReLU + 2x2
max-pool blocks, global mean pool, dense, head; cross-entropy, Adam 1e-3)
or "short_chunk_cnn" (Won et al. 2020's Short-chunk CNN: input BatchNorm,
seven conv-BN-ReLU-pool blocks, max over time, dense-BN-ReLU-dropout-dense;
BCE, Adam 1e-4 with coupled weight decay 1e-4), trains it on random inputs
and prints its examples/s. It imports torch only (never TensorFlow, JAX or
mcl), and torch is not a dependency of mcl.
"""

import sys
import time

import torch
from torch import nn
from torch.nn import functional

GTZAN_SHAPE = (188, 128)  # As launch/benchmark_train.py.
GTZAN_CONV, GTZAN_DENSE, GTZAN_CLASSES = (8, 16, 32, 32), (32,), 3
SHORT_CHUNK_SHAPE = (231, 128)  # 59,049 samples at hop 256; 128 mels.


def _setup(name: str, batch: int):
  """The twin's training step on random inputs."""
  torch.manual_seed(0)
  if name == "gtzan":

    class Twin(nn.Module):
      def __init__(self):
        super().__init__()
        widths = (1, *GTZAN_CONV)
        self.convs = nn.ModuleList(
          nn.Conv2d(a, b, 3, padding=1)
          for a, b in zip(widths, widths[1:], strict=False)
        )
        self.dense = nn.Linear(GTZAN_CONV[-1], GTZAN_DENSE[0])
        self.head = nn.Linear(GTZAN_DENSE[0], GTZAN_CLASSES)

      def forward(self, x):
        mean = x.mean(dim=(1, 2), keepdim=True)
        std = x.std(dim=(1, 2), keepdim=True, unbiased=False)
        x = ((x - mean) / (std + 1e-5))[:, None]
        for conv in self.convs:
          x = functional.max_pool2d(functional.relu(conv(x)), 2)
        x = functional.relu(self.dense(x.mean(dim=(2, 3))))
        return self.head(x)

    net = Twin()
    x = torch.randn(batch, *GTZAN_SHAPE)
    y = torch.randint(0, GTZAN_CLASSES, (batch,))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  elif name == "short_chunk_cnn":

    class Twin(nn.Module):
      def __init__(self, c=128):
        super().__init__()
        self.spec_bn = nn.BatchNorm2d(1)
        widths = (1, c, c, 2 * c, 2 * c, 2 * c, 2 * c, 4 * c)
        self.blocks = nn.ModuleList(
          nn.Sequential(
            nn.Conv2d(a, b, 3, padding=1),
            nn.BatchNorm2d(b),
            nn.ReLU(),
            nn.MaxPool2d(2),
          )
          for a, b in zip(widths, widths[1:], strict=False)
        )
        self.dense1 = nn.Linear(4 * c, 4 * c)
        self.bn = nn.BatchNorm1d(4 * c)
        self.dense2 = nn.Linear(4 * c, 50)
        self.dropout = nn.Dropout(0.5)

      def forward(self, x):
        x = self.spec_bn(x.transpose(1, 2)[:, None])  # [B, 1, mels, T]
        for block in self.blocks:
          x = block(x)
        x = x.squeeze(2).max(dim=2).values
        x = self.dropout(functional.relu(self.bn(self.dense1(x))))
        return self.dense2(x)

    net = Twin()
    x = torch.randn(batch, *SHORT_CHUNK_SHAPE)
    y = (torch.rand(batch, 50) < 0.1).float()
    loss_fn = nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-4)
  else:
    raise SystemExit(f"no PyTorch twin of {name}")
  net.train()

  def step():
    opt.zero_grad()
    loss = loss_fn(net(x), y)
    loss.backward()
    opt.step()
    return loss

  return step


def main():
  name, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
  step = _setup(name, batch)
  for _ in range(3):  # Warm up.
    step()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  print(f"examples/s {steps * batch / (time.perf_counter() - start):.3f}")


if __name__ == "__main__":
  main()
