"""The live images of the Train page show what the plotly heatmaps show."""
import numpy as np

from dashboard import figures


def test_filter_image_colours_sign_and_keeps_layout():
    W = np.zeros((4, 4))
    W[0, 0], W[1, 0] = 2.0, -2.0  # tile 0: one strong positive pixel; tile 1: one strong negative
    img = figures.filter_image(W, (2, 2), width=50)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    f = 50 // 5  # 2 x 2 tiles of 2 x 2 pixels with a 1-pixel gap: a 5 x 5 mosaic, upscaled by 10
    assert img.shape[:2] == (5 * f, 5 * f)
    red, blue, white, gap = img[0, 0], img[0, 3 * f], img[0, f], img[2 * f, 2 * f]
    assert red[0] > 150 and red[2] < 80  # the positive weight is red
    assert blue[2] > 150 and blue[0] < 80  # the negative weight is blue
    assert (white > 240).all()  # zero is white
    assert (gap == 225).all()  # gaps between tiles are grey


def test_recon_image_rows_and_grey_levels():
    x = np.zeros((3, 4))
    x[:, 0] = 1.0
    img = figures.recon_image(x, x * 0.5, (2, 2), value_range=(0.0, 1.0), width=110)
    f = 110 // 8  # 3 tiles of 2 x 2 per row with 1-pixel gaps: 8 wide; 2 rows (input, output): 5 high
    assert img.shape[:2] == (5 * f, 8 * f)
    assert (img[0, 0] == 0).all()  # a 1 is black (as plotly's gray_r)
    assert (img[0, f] == 255).all()  # a 0 is white
    assert 120 <= img[3 * f, 0, 0] <= 135  # the output row: 0.5 is mid grey


def _drawn(trace) -> bool:
    """Whether plotly draws something for this scatter trace: a line needs two points, a marker one."""
    return len(trace.x) >= 2 or "markers" in trace.mode


def test_a_run_that_reported_once_still_shows_its_loss_and_longer_runs_draw_lines():
    from dashboard import figures_features, figures_latent, figures_recsys

    one = [{"step": 6, "epoch": 3.0, "loss": 18.1, "recon": 17.0, "sparsity": 1.1}]  # a 6-step run: one report
    figs = [figures.loss_curve(one), figures.loss_overlay({"run a": one}),
            figures_latent.principal_angles_figure([6], [np.array([40.0, 10.0])]),
            figures_features.pretrain_curves({"100": {"epoch": [1], "pretrained": [0.8], "random": [0.7]}}),
            figures_recsys.validation_curve([{"epoch": 1, "valid_rmse": 0.95}], best_epoch=1)]
    for fig in figs:
        assert fig.data and all(_drawn(t) for t in fig.data), fig.layout.title.text
    assert len(figures.loss_curve(one).data) == 3  # recon, sparsity and the total, each a point
    two = one + [{"step": 12, "epoch": 6.0, "loss": 17.0, "recon": 16.0, "sparsity": 1.0}]
    assert {t.mode for t in figures.loss_curve(two).data} == {"lines"}
    assert {t.mode for t in figures.loss_overlay({"run a": two, "run b": one}).data} == {"lines", "markers"}


def test_metric_comparison_of_one_group_names_its_bars_on_the_axis_instead_of_a_legend():
    fig = figures.metric_comparison(["test set"], {"autoencoder": [2.86], "PCA (K=3)": [2.88]}, x_title="")
    assert [list(t.x) for t in fig.data] == [["autoencoder"], ["PCA (K=3)"]]
    assert [t.showlegend for t in fig.data] == [False, False] and fig.layout.barmode == "overlay"
    assert fig.layout.xaxis.title.text == "test set"
    assert [list(t.y) for t in fig.data] == [[2.86], [2.88]] and fig.data[0].text == ("2.86",)
    many = figures.metric_comparison(["run a", "run b"], {"autoencoder": [1.0, 2.0], "PCA": [1.5, None]})
    assert [list(t.x) for t in many.data] == [["run a", "run b"]] * 2
    assert many.layout.barmode == "group" and all(t.showlegend is not False for t in many.data)
    assert many.layout.xaxis.title.text == "run" and many.data[1].text == ("1.5", "")


def test_interpolation_labels_are_thinned_so_that_they_do_not_touch_in_a_narrow_plot():
    from dashboard import figures_generate as fg

    for steps in range(3, 17):  # the Generate page's slider
        n_tiles = steps + 2  # with the two inputs at the ends
        texts = [f"t={v:.2f}" for v in np.linspace(0, 1, steps)]
        shown = fg.thinned_labels(texts, n_tiles)
        kept = [i for i, t in enumerate(shown) if t]
        assert shown[0] == "t=0.00" and shown[-1] == "t=1.00", (steps, shown)
        assert all(shown[i] == texts[i] for i in kept)  # labels stay on their own tile
        pitch = fg.NARROWEST_PLOT_PX / n_tiles
        gaps = np.diff(kept) * pitch
        assert gaps.min() >= fg.LABEL_PX, (steps, kept, gaps.min())
        assert len(kept) >= 3  # not thinned to nothing
    assert fg.thinned_labels(["x", "y", "z"], 3) == ["x", "y", "z"]  # room for all: none dropped

    rng = np.random.default_rng(0)
    fig = fg.interpolation_figure(rng.random((16, 64)), np.linspace(0, 1, 16), (8, 8), "interp", (0, 1),
                                  ends=(rng.random(64), rng.random(64)))
    texts = [a.text for a in fig.layout.annotations]
    above = [t for t in texts if t.startswith("t=")]
    assert above[0] == "t=0.00" and above[-1] == "t=1.00" and 4 <= len(above) < 16
    assert texts.count("a") == 1 and texts.count("b") == 1  # the two inputs, marked under their tiles


def test_long_column_labels_of_several_words_get_two_lines():
    from dashboard import figures_generate as fg

    assert fg.two_lines("denoising AE") == "denoising<br>AE"
    assert fg.two_lines("with the hidden pixels") == "with the<br>hidden pixels"  # the space nearest the middle
    assert fg.two_lines("plain AE") == "plain AE" and fg.two_lines("corrupted") == "corrupted"  # short: one line
    assert fg.two_lines("reconstructions") == "reconstructions"  # one word: nowhere to break
