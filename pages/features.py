"""Features & pre-training: the code h = f(x) as a representation for classifiers.

Two experiments, each run by ``aecore.features`` in a background thread: linear probes of
the codes against PCA and raw inputs, and greedy layer-wise pre-training against random
initialisation with few labels. The page only turns widgets into configs and draws what
aecore returns.
"""
from __future__ import annotations

import streamlit as st

from aecore.features import PretrainConfig, pretrain, probe
from aecore.registry import variant_names
from dashboard.feature_tasks import start_task
from dashboard.figures import filter_grid, metric_comparison
from dashboard.figures_features import pretrain_curves, probe_bars
from dashboard.state import datasets_info, load_dataset

PROBE_KEY, PRE_KEY = "probe_task", "pretrain_task"
LABEL_CHOICES = ("100", "1000", "all")

st.title("Features & pre-training")
st.markdown(
    "An autoencoder is trained without labels; is its code a better starting point for a classifier "
    "than the raw pixels? **Codes as features** fits a logistic regression (a *linear probe*) on the "
    "codes of a few labelled examples. **Pre-training** initialises a deep network layer by layer with "
    "(denoising) autoencoders and fine-tunes it on few labels, against the same network from random weights.")

offline = [d["name"] for d in datasets_info() if d.get("available_offline")] or ["digits"]


@st.fragment(run_every=1.0)
def _progress(key: str):
    t = st.session_state.get(key)
    if t is None:
        return
    if not t.done:
        st.info(f"Running: {t.stage} ({t.elapsed:.0f} s)")
    elif st.session_state.get(f"_{key}_shown") is not t:
        st.session_state[f"_{key}_shown"] = t
        st.rerun(scope="app")


def _status(key: str):
    """The finished task's result, or None (showing why)."""
    t = st.session_state.get(key)
    if t is None:
        st.caption("Press the button to run; results appear here when it ends.")
        return None
    if not t.done:
        _progress(key)
        return None
    st.session_state[f"_{key}_shown"] = t
    if t.status == "failed":
        st.error(f"The run failed: {t.error}")
        return None
    if t.status == "stopped":
        st.warning("Stopped early: these results are partial.")
    return t.result


def _buttons(key: str, label: str, disabled: bool) -> bool:
    t = st.session_state.get(key)
    running = t is not None and not t.done
    b1, b2, _ = st.columns([2, 1, 5])
    pressed = b1.button(label, type="primary", disabled=disabled or running, key=f"{key}_run")
    if running and b2.button("Stop", key=f"{key}_stop"):
        t.stop()
    return pressed


tab_probe, tab_pre = st.tabs(["Codes as features", "Pre-training"])

# --- linear probes ------------------------------------------------------------------------------
with tab_probe:
    c1, c2, c3, c4 = st.columns(4)
    ds_name = c1.selectbox("Data set", offline, key="probe_ds")
    k = c2.number_input("Code size K", min_value=1, max_value=2000, value=16, key="probe_k")
    epochs = c3.number_input("Epochs per autoencoder", min_value=1, max_value=1000, value=20, key="probe_epochs")
    lr = c4.number_input("Learning rate", min_value=1e-5, max_value=1.0, value=3e-3, format="%g", key="probe_lr")
    names = variant_names()
    variants = st.multiselect("Variants", names, default=[v for v in ("sigmoid", "deep") if v in names],
                              key="probe_variants")
    labels = st.multiselect("Labelled examples", LABEL_CHOICES, default=list(LABEL_CHOICES), key="probe_labels")
    if _buttons(PROBE_KEY, "Train and probe", disabled=not variants or not labels):
        data = load_dataset(ds_name)
        if data is not None:
            params = dict(variants=tuple(variants), code_size=int(k), epochs=int(epochs), lr=float(lr),
                          labels=tuple(None if x == "all" else int(x) for x in labels))
            st.session_state[PROBE_KEY] = start_task(
                "probe", params, lambda rec: probe(data, **params, on_stage=rec.on_stage, stop=rec.stop_event),
                slots=1)  # trains on this server's cores: queues with the jobs
            st.rerun()
    res = _status(PROBE_KEY)
    if res is not None:
        st.plotly_chart(probe_bars(res.accuracy, res.labels, res.accuracy_std, res.code_size, res.dataset),
                        key="probe_bars")
        st.caption(f"{res.n_train} training inputs (autoencoders and PCA use all of them, without labels), "
                   f"{res.n_test} test examples; {res.seconds:.0f} s.")

# --- pre-training -------------------------------------------------------------------------------
with tab_pre:
    c1, c2, c3, c4 = st.columns(4)
    pre_ds = c1.selectbox("Data set", offline, index=offline.index("mnist") if "mnist" in offline else 0,
                          key="pre_ds", help="MNIST is the experiment of the lecture; digits runs in seconds.")
    small = pre_ds == "digits"
    hidden_text = c2.text_input("Hidden layers", value="64,64" if small else "500,500", key=f"pre_hidden_{small}")
    noise_level = c3.number_input("Masking noise (0 = plain autoencoders)", min_value=0.0, max_value=1.0,
                                  value=0.25, step=0.05, key="pre_noise")
    labels_text = c4.text_input("Labelled examples", value="50,300" if small else "100,1000", key=f"pre_labels_{small}")
    c5, c6, c7, c8 = st.columns(4)
    pre_epochs = c5.number_input("Pre-training epochs per layer", min_value=0, max_value=1000,
                                 value=30 if small else 10, key=f"pre_epochs_{small}")
    ft_epochs = c6.number_input("Fine-tuning epochs", min_value=1, max_value=5000, value=100, key="pre_ft_epochs")
    n_unl = c7.number_input("Unlabelled inputs (0 = all)", min_value=0, value=0 if small else 20000, step=1000,
                            key=f"pre_nunl_{small}")
    repeats = c8.number_input("Labelled subsets to average", min_value=1, max_value=20, value=1, key="pre_repeats")
    try:
        cfg = PretrainConfig(hidden=tuple(int(h) for h in hidden_text.replace(" ", "").split(",") if h),
                             labels=tuple(int(x) for x in labels_text.replace(" ", "").split(",") if x),
                             noise_level=float(noise_level), pretrain_epochs=int(pre_epochs),
                             pretrain_lr=1e-2 if small else 3e-3, finetune_epochs=int(ft_epochs),
                             n_unlabelled=int(n_unl) or None, repeats=int(repeats))
    except ValueError as exc:  # ConfigError is a ValueError
        st.error(f"Settings: {exc}")
        cfg = None
    if _buttons(PRE_KEY, "Pre-train and fine-tune", disabled=cfg is None):
        data = load_dataset(pre_ds)
        if data is not None:
            st.session_state[PRE_KEY] = start_task(
                "pretrain", {"cfg": cfg}, lambda rec: pretrain(data, cfg, on_stage=rec.on_stage, stop=rec.stop_event),
                slots=1)
            st.rerun()
    res = _status(PRE_KEY)
    if res is not None and res.curves:
        keys = list(res.curves)
        st.plotly_chart(pretrain_curves(res.curves, res.dataset), key="pre_curves")
        st.plotly_chart(metric_comparison([f"{k} labels" for k in keys],
                                          {"pre-trained": [res.accuracy["pretrained"][k] for k in keys],
                                           "random init": [res.accuracy["random"][k] for k in keys]},
                                          title="Test accuracy after fine-tuning", y_title="test accuracy",
                                          x_title="labelled training examples"), key="pre_bars")
        st.subheader("First-layer filters")
        key = st.selectbox("After fine-tuning on", keys, format_func=lambda k: f"{k} labels", key="pre_filter_key")
        f = res.filters.get(key, {})
        cols = st.columns(2)
        for col, which, title in ((cols[0], "pretrained", "Pre-trained, then fine-tuned"),
                                  (cols[1], "random", "Random init, then trained")):
            if which in f:
                col.plotly_chart(filter_grid(f[which], res.shape, title=title, max_tiles=64, order="norm"),
                                 key=f"pre_filters_{which}")
        if "init" in f:
            with st.expander("The pre-trained filters before fine-tuning"):
                st.plotly_chart(filter_grid(f["init"], res.shape, title="Pre-trained (before fine-tuning)",
                                            max_tiles=64, order="norm"), key="pre_filters_init")
        if res.layer_losses:
            st.caption("Pre-training: " + "; ".join(
                f"layer {r['layer']} ({r['input_dim']}→{r['code_size']}) loss {r['train_loss']:.3g} in {r['seconds']:.0f} s"
                for r in res.layer_losses) + f". Total {res.seconds:.0f} s.")
