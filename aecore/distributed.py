"""Data-parallel training over several processes with torch.distributed.

Launched by ``torchrun``, which starts one process per rank and gives each its place in the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT):

    torchrun --nproc_per_node 2 -m aecore.cli train --distributed --variant sigmoid -k 32 --dataset digits

Every rank holds the whole training set on its device and builds the same model from the
same seed. Each epoch all ranks draw the same seeded permutation and take every W-th index of
it from their rank on (torch's DistributedSampler split: padded by wrap-around to a multiple
of W, so every rank runs the same number of steps). A step's global batch is therefore the W
per-rank batches of B examples, i.e. the same examples a single process with batch W*B sees;
DistributedDataParallel averages the gradients, and since every loss term is a mean over the
batch, the updates equal those of single-process training with batch W*B, up to the order of
float reductions (tests/test_distributed.py measures it). Noise and sampling (denoising
variants, the VAE) draw from a per-rank generator, so those runs are equal in distribution only.

Rank 0 alone records the run; the other ranks only train. A signal that stops training
(``aecore.cli.StopOnSignal``: Ctrl-C, SIGTERM) stops every rank at one common step.
"""
from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .training import Finished, Progress, Trainer, resolve_device

__all__ = ["DistributedError", "Session", "DistributedTrainer", "STOP_CHECK_STEPS", "process_group", "torchrun_env"]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
LAUNCH_HINT = "torchrun --nproc_per_node N -m aecore.cli train --distributed ..."


class DistributedError(ValueError):
    """Distributed training cannot start here; the message says what is missing."""


@dataclass(frozen=True)
class Session:
    rank: int
    world_size: int
    local_rank: int
    backend: str          # nccl (CUDA) or gloo (CPU)
    device: torch.device  # this rank's device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_env(env=None) -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; a clear error without it."""
    env = os.environ if env is None else env
    missing = [k for k in _ENV if not env.get(k)]
    if missing:
        raise DistributedError(f"--distributed needs the environment torchrun sets ({', '.join(missing)} "
                               f"missing); launch it as: {LAUNCH_HINT}")
    try:
        rank, world, local = (int(env[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise DistributedError(f"RANK={env['RANK']!r}, WORLD_SIZE={env['WORLD_SIZE']!r}, "
                               f"LOCAL_RANK={env['LOCAL_RANK']!r} must be whole numbers") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistributedError(f"RANK={rank} must lie in [0, WORLD_SIZE={world}) and LOCAL_RANK={local} be >= 0")
    return rank, world, local


def _session(device_name: str, env=None) -> Session:
    rank, world, local = torchrun_env(env)
    if device_name == "mps":
        raise DistributedError("device='mps' cannot train distributed (no torch.distributed backend); "
                               "use --device cuda or cpu")
    if device_name in ("auto", "cuda") and torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise DistributedError(f"LOCAL_RANK={local} has no GPU: this machine has {torch.cuda.device_count()}; "
                                   f"start at most that many processes per node")
        torch.cuda.set_device(local)  # so that device 'cuda' in the Trainer is this rank's GPU
        return Session(rank, world, local, "nccl", torch.device("cuda", local))
    device = resolve_device("cpu" if device_name == "auto" else device_name)  # 'cuda' without a GPU: its error
    return Session(rank, world, local, "gloo", device)


@contextmanager
def process_group(device: str = "auto", timeout_s: float = 300.0):
    """Join torchrun's process group for the ``with`` block and leave it cleanly afterwards.

    ``timeout_s`` bounds how long a rank waits for the others in a collective (a rank that
    died would otherwise hang the rest). The group is found through torchrun's environment."""
    session = _session(device)
    dist.init_process_group(session.backend, timeout=timedelta(seconds=timeout_s),
                            **({"device_id": session.device} if session.backend == "nccl" else {}))
    try:
        yield session
    except BaseException:
        # leave at once: another rank may be mid-collective (torchrun ends the rest when one fails)
        if dist.is_initialized():
            dist.destroy_process_group()
        raise
    # every rank done with its collectives before any tears its connections down
    dist.barrier()
    dist.destroy_process_group()


class _LossTerms(torch.nn.Module):
    """The model's loss terms as a ``forward``: DistributedDataParallel synchronises gradients
    only for what runs through its own ``forward``. Noise draws use this rank's generator."""

    def __init__(self, model: torch.nn.Module, generator: torch.Generator):
        super().__init__()
        self.model = model
        self.generator = generator

    def forward(self, xb: torch.Tensor, generator=None) -> dict:
        # ``generator`` (the permutation's, shared by all ranks) is ignored: drawing noise from it
        # would give every rank the same noise and put the ranks' permutations out of step
        return self.model.loss_terms(xb, generator=self.generator)


STOP_CHECK_STEPS = 20  # the ranks agree whether to stop every this many steps (one 4-byte all-reduce)


class DistributedTrainer(Trainer):
    """A ``Trainer`` for one rank of a ``process_group``: same events, same config.

    ``train_cfg.batch_size`` is the per-rank batch (the global batch is ``world_size`` times it).
    Progress reports rank 0's loss and the throughput of all ranks; the Finished metrics add
    ``world_size`` and ``global_batch_size`` and average ``train_loss`` over the ranks.

    ``stop`` set on any rank stops every rank at the same step, at most 2 x ``STOP_CHECK_STEPS``
    steps later: a rank that stopped alone would leave the others waiting in the gradient
    all-reduce. The ranks compare their flags with an all-reduce that runs in the background
    over the next ``STOP_CHECK_STEPS`` steps, on the CPU (gloo), so no rank waits for it and a
    CUDA run does not wait for its GPU.
    """

    def __init__(self, model_cfg, train_cfg, data, session: Session, **kw):
        super().__init__(model_cfg, train_cfg, data, **kw)
        self.session = session
        self._control = None  # the group the stop flags go through (None: the default, gloo, group)
        self._pending = None  # (work, flag) of the stop flags' all-reduce in flight

    def graph_reason(self, model, device, noisy):
        # DistributedDataParallel all-reduces gradients from hooks as backward runs: not captured here
        return "distributed training (DistributedDataParallel's gradient all-reduce is not captured)"

    def _written_out_fn(self, model, device):
        # DistributedDataParallel all-reduces the gradients from autograd's hooks
        self.backward_note = "distributed training (DistributedDataParallel all-reduces autograd's gradients)"
        return None

    def _should_stop(self, step: int) -> bool:
        # every STOP_CHECK_STEPS steps: read the all-reduce of the flags sent the previous time
        # (done by now, so no rank waits for it) and send this rank's flag for the next time
        if step % STOP_CHECK_STEPS:
            return False
        stop = False
        if self._pending is not None:
            work, flag = self._pending
            work.wait()
            stop = bool(flag.item())
        if not stop:
            flag = torch.tensor([1 if self.stop.is_set() else 0], dtype=torch.int32)
            self._pending = (dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._control, async_op=True), flag)
        else:
            self._pending = None
        return stop

    def _shard(self, perm: torch.Tensor) -> torch.Tensor:
        W, r = self.session.world_size, self.session.rank
        pad = (-perm.shape[0]) % W  # wrap around so that every rank gets ceil(N / W) examples
        if pad:
            perm = torch.cat([perm, perm[:pad]])
        return perm[r::W]

    def _loss_fn(self, model):
        from torch.nn.parallel import DistributedDataParallel as DDP

        s = self.session
        gen = torch.Generator(device=s.device).manual_seed(self.train_cfg.seed + 1_000_003 * (s.rank + 1))
        # DDP broadcasts rank 0's weights now (all ranks built the same ones from the seed anyway)
        return DDP(_LossTerms(model, gen), device_ids=[s.device.index] if s.backend == "nccl" else None)

    def run(self):
        W = self.session.world_size
        if self.session.backend != "gloo" and self._control is None:  # every rank makes it, in the same order
            self._control = dist.new_group(backend="gloo")
        self._pending = None
        for ev in super().run():
            if isinstance(ev, Progress):
                ev = dataclasses.replace(ev, samples_per_second=ev.samples_per_second * W)
            elif isinstance(ev, Finished):
                m = dict(ev.metrics)
                loss = torch.tensor([float(m.get("train_loss", float("nan")))], dtype=torch.float64,
                                    device=self.session.device)
                dist.all_reduce(loss)  # every rank reaches Finished after the same number of steps
                m.update(train_loss=float(loss) / W, world_size=W, global_batch_size=self.train_cfg.batch_size * W,
                         samples_per_second=float(m.get("samples_per_second", 0.0)) * W,
                         steady_samples_per_second=float(m.get("steady_samples_per_second", 0.0)) * W,
                         backend=self.session.backend)
                ev = dataclasses.replace(ev, metrics=m)
            yield ev
