"""Per-session resource caps for a shared class server.

``aecore.config`` has absolute caps for the library (K, epochs <= 100 000: a typo must not eat
the machine). A class server shared by forty students needs tighter ones, per session: a job
that is too big or too long holds one of the ``AECORE_MAX_JOBS`` training slots and makes the
whole class wait. The caps below apply to every job a browser session submits (the sidebar
bounds its widgets and URL parameters by them; ``JobManager.submit`` refuses a job beyond
them); jobs submitted outside a session (the CLI, scripts, tests) are not capped here.

Each cap is a setting (an environment variable read when it is used, so a restart is not
needed in tests); the defaults and why they were chosen are in the README's settings table.
"""
from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass, fields

from aecore.config import env_int

__all__ = ["Limits", "LimitError", "current", "ENV", "check_configs", "check_data", "check_job", "param_count",
           "steps", "session_owner", "refuse_on_page"]

# field -> (environment variable, default, what it counts)
ENV = {
    "code_size": "AECORE_MAX_CODE_SIZE",
    "epochs": "AECORE_MAX_EPOCHS",
    "steps": "AECORE_MAX_STEPS",
    "train_examples": "AECORE_MAX_TRAIN_EXAMPLES",
    "params": "AECORE_MAX_PARAMS",
    "jobs_per_session": "AECORE_MAX_JOBS_PER_SESSION",
}


class LimitError(ValueError):
    """A job is beyond a per-session cap; the message names the value, the cap and its setting."""


@dataclass(frozen=True)
class Limits:
    code_size: int = 4096          # K: 4096 units already over-complete 5x on MNIST (784 pixels)
    epochs: int = 10_000           # the Compare page's own widget bound; steps is the real work cap
    steps: int = 250_000           # optimizer steps per job: 10 000 epochs of digits, ~270 of MNIST at batch 64
    train_examples: int = 60_000   # MNIST / Fashion-MNIST's full training sets
    params: int = 10_000_000       # ~40 MB of weights, ~160 MB with gradients and Adam's moments
    jobs_per_session: int = 10     # running + queued: the Compare page starts up to 9 at once

    @classmethod
    def from_env(cls) -> "Limits":
        return cls(**{f.name: env_int(ENV[f.name], f.default) for f in fields(cls)})


def current() -> Limits:
    """The caps in force now (defaults, raised or lowered by the environment)."""
    return Limits.from_env()


def _over(what: str, value, cap: int, field: str, hint: str) -> LimitError:
    return LimitError(f"{what}={value:,} is above this server's limit of {cap:,} per job; {hint} "
                      f"(the lecturer can raise it with {ENV[field]})")


def check_configs(model_cfg, train_cfg, lim: Limits | None = None) -> None:
    """K and epochs: the caps that do not depend on the data."""
    lim = lim or current()
    if model_cfg.code_size > lim.code_size:
        raise _over("code size K", model_cfg.code_size, lim.code_size, "code_size", "choose a smaller K")
    if train_cfg.epochs > lim.epochs:
        raise _over("epochs", train_cfg.epochs, lim.epochs, "epochs", "train for fewer epochs")


def steps(train_cfg, n_train: int) -> int:
    """Optimizer steps of a job (as the Trainer counts them: ceil(N / batch) per epoch)."""
    return math.ceil(n_train / train_cfg.batch_size) * train_cfg.epochs


@functools.lru_cache(maxsize=256)
def param_count(model_cfg, input_dim: int) -> int:
    """Trainable parameters of the model a config describes, built on torch's meta device (no memory)."""
    import torch

    from aecore.models import build_model

    with torch.device("meta"):
        model = build_model(model_cfg, int(input_dim))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_data(model_cfg, train_cfg, n_train: int, input_dim: int, lim: Limits | None = None) -> None:
    """Dataset size, optimizer steps and parameters: the caps that depend on the data."""
    lim = lim or current()
    if n_train > lim.train_examples:
        raise _over(f"training examples of {train_cfg.dataset!r}", n_train, lim.train_examples, "train_examples",
                    "use a smaller data set")
    n_steps = steps(train_cfg, n_train)
    if n_steps > lim.steps:
        raise _over(f"training steps ({train_cfg.epochs} epochs x {math.ceil(n_train / train_cfg.batch_size)} "
                    f"batches of {train_cfg.batch_size})", n_steps, lim.steps, "steps",
                    "train for fewer epochs or with a larger batch size")
    n_params = param_count(model_cfg, input_dim)
    if n_params > lim.params:
        raise _over(f"model parameters ({model_cfg.variant}, K={model_cfg.code_size}, {input_dim} inputs)", n_params,
                    lim.params, "params", "choose a smaller K or fewer / smaller hidden layers")


def check_job(model_cfg, train_cfg, n_train: int, input_dim: int, lim: Limits | None = None) -> None:
    """Every per-job cap; raises LimitError naming the first one exceeded."""
    lim = lim or current()
    check_configs(model_cfg, train_cfg, lim)
    check_data(model_cfg, train_cfg, n_train, input_dim, lim)


OWNER_KEY = "_aecore_owner"


def session_owner() -> str | None:
    """A token of the Streamlit session whose script runs in this thread, kept in its session state
    (None outside a script run: the CLI, a test, a job thread). Not ``ctx.session_id``: AppTest
    gives every test session the same one."""
    try:
        import streamlit as st
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:
        return None
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    if OWNER_KEY not in st.session_state:
        st.session_state[OWNER_KEY] = uuid.uuid4().hex
    return st.session_state[OWNER_KEY]


def refuse_on_page(exc: LimitError) -> None:
    """Show a refusal on the page whose script asked for the job (one line, no traceback) and stop
    this script run; the next interaction reruns the page as usual."""
    import streamlit as st

    msg = str(exc)
    st.error(f"Not started: {msg[:1].upper()}{msg[1:]}.")
    st.stop()
