"""Report figures and the HTML page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedcredit.errors import DataError
from fedcredit.model import plots
from fedcredit.model.metrics import evaluate, summarize
from fedcredit.model.report import write_html_report
from fedcredit.model.scorecard import Scorecard
from fedcredit.protocol.report import evaluation_files

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(np.int64)
    p = np.clip(0.3 + 0.2 * y + rng.normal(scale=0.15, size=400), 0.01, 0.99)
    return y, p


def test_each_plot_writes_a_png(predictions: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    y, p = predictions
    written = [
        plots.plot_roc(y, p, tmp_path / "roc.png"),
        plots.plot_ks(y, p, tmp_path / "ks.png"),
        plots.plot_score_hist(y, 600 - 100 * p, tmp_path / "scores.png"),
        plots.plot_iv({"PAY_0": 0.8, "AGE": 0.01}, tmp_path / "sub" / "iv.png"),
    ]
    for path in written:
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_importing_plots_does_not_import_matplotlib() -> None:
    code = "import fedcredit.model.plots, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_plot_iv_refuses_an_empty_mapping(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        plots.plot_iv({}, tmp_path / "iv.png")


def test_report_embeds_metrics_images_and_tables(
    predictions: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    y, p = predictions
    image = plots.plot_roc(y, p, tmp_path / "roc.png")
    tables = {"Points": [{"column": "PAY_0", "bin": "(-inf, 0]", "points": 12.5}]}
    page = write_html_report(tmp_path / "out", evaluate(y, p), [str(image)], tables)
    text = page.read_text(encoding="utf-8")
    assert page.name == "report.html"
    assert "<th>auc</th>" in text
    assert "<th>auc_ci95</th>" in text and "<th>ks_ci95</th>" in text
    assert "data:image/png;base64," in text
    assert "(-inf, 0]" in text and "PAY_0" in text


def test_evaluation_report_opens_with_the_intervals_rows_and_defaults(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    files = evaluation_files(y, p, Scorecard())
    text = files["report.html"].decode("utf-8")
    metrics = evaluate(y, p)
    lo, hi = metrics["auc_ci95"]
    expected = (
        f"AUC {metrics['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f}, 400 rows, "
        f"{int(y.sum())} defaults); KS {metrics['ks']:.3f} (95% CI "
    )
    assert f'<tr><th>summary</th><td class="t">{summarize(metrics)}</td></tr>' in text
    assert expected in text
    assert text.index("<th>summary</th>") < text.index("<th>auc</th>")


def test_report_escapes_html_in_names(tmp_path: Path) -> None:
    page = write_html_report(tmp_path, {"<script>": 1}, [])
    assert "<script>" not in page.read_text(encoding="utf-8")


def test_report_refuses_a_missing_image(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        write_html_report(tmp_path, {}, [str(tmp_path / "nope.png")])


def test_a_column_of_words_is_left_aligned_and_figures_read_as_figures() -> None:
    from fedcredit.model.report import table

    rows = [
        {"grade": "A", "role": "partner", "rows": 12345, "points": -0.0, "range": "0.1 to 0.2"},
        {"grade": "B", "role": "lender", "rows": 7, "points": 1.5, "range": "(-inf, 3]"},
    ]

    text = table(rows)

    # Only the column of words (after the first, left-aligned anyway) is marked as text.
    assert '<th class="t">role</th>' in text and '<td class="t">partner</td>' in text
    assert "<th>rows</th>" in text and "<td>12,345</td>" in text
    assert "<td>0</td>" in text and "-0" not in text  # no negative zero
    assert "<th>range</th>" in text  # intervals and ranges are figures
    assert "<td>A</td>" in text
