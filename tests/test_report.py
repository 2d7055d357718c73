import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genrec_model.evaluation.report import PUBLISHED_ANCHORS, metrics_frame, metrics_table, write_report


def _metrics() -> pd.DataFrame:
    return pd.concat([
        metrics_frame({"recall@5": 0.05, "ndcg@5": 0.03, "recall@10": 0.0812, "ndcg@10": 0.0411},
                      model="SASRec-CE", split="test", dataset="beauty"),
        metrics_frame({"recall@5": 0.0072, "recall@10": 0.0114, "ndcg@5": 0.004, "ndcg@10": 0.0053},
                      model="MostPop", split="test", dataset="beauty"),
        metrics_frame({"recall@10": 0.09}, model="SASRec-CE", split="valid", dataset="beauty"),
    ], ignore_index=True)


def test_metrics_frame_parses_keys():
    df = metrics_frame({"recall@10": 0.5, "ndcg@20": 0.25}, model="m", split="test", dataset="d")
    assert df.to_dict("records") == [
        {"model": "m", "split": "test", "metric": "recall", "k": 10, "value": 0.5, "dataset": "d"},
        {"model": "m", "split": "test", "metric": "ndcg", "k": 20, "value": 0.25, "dataset": "d"},
    ]


def test_metrics_table_rows_and_anchor_rows():
    table = metrics_table(_metrics(), {"TIGER (published)": {"recall@10": 0.0648}}, anchor_dataset="beauty")
    assert list(table.columns) == ["dataset", "model", "split", "source",
                                   "ndcg@5", "ndcg@10", "recall@5", "recall@10"]
    assert table[["model", "split", "source"]].values.tolist() == [
        ["SASRec-CE", "test", "measured"], ["MostPop", "test", "measured"],
        ["SASRec-CE", "valid", "measured"], ["TIGER (published)", "test", "published"]]
    assert table["dataset"].tolist() == ["beauty"] * 4
    assert table.loc[0, "recall@10"] == 0.0812
    assert table.loc[3, "recall@10"] == 0.0648 and np.isnan(table.loc[3, "ndcg@5"])
    with pytest.raises(ValueError):
        metrics_table(_metrics().drop(columns="dataset"), {})


def test_write_report_html_and_pngs(tmp_path):
    path = write_report(tmp_path / "rep", _metrics(), anchor_dataset="beauty",
                        extra_sections={"SID statistics": {"collision_rate": 0.031, "levels": 4},
                                        "Decode throughput": pd.DataFrame({"batch": [64], "users_per_s": [812.5]}),
                                        "Notes": "a <b>raw</b> note"})
    text = path.read_text()
    assert path.name == "report.html"
    assert "<td>SASRec-CE</td>" in text and "<td>MostPop</td>" in text
    assert "0.0812" in text and "0.0411" in text
    for name in PUBLISHED_ANCHORS["beauty"]:  # the dataset's published figures are shown, labelled as such
        assert f"<td>{name}</td>" in text
    assert "0.0648" in text and "0.0821" in text and "<td>published</td>" in text
    assert "<h2>SID statistics</h2>" in text and "<td>collision_rate</td>" in text and "812.5" in text
    assert "a &lt;b&gt;raw&lt;/b&gt; note" in text
    assert text.count("data:image/png;base64,") == 2
    for png in ("metrics_bar.png", "metrics_by_k.png"):
        with Image.open(tmp_path / "rep" / png) as im:
            assert im.format == "PNG" and im.size[0] > 100
            im.verify()


def test_report_draws_no_published_figures_for_another_dataset(tmp_path):
    text = write_report(tmp_path / "ml", _metrics(), anchor_dataset="ml-100k").read_text()
    assert "<td>published</td>" not in text and "TIGER" not in text and "0.0648" not in text


def _segmented() -> pd.DataFrame:
    parts = []
    for seg, scale in (("all", 1.0), ("warm", 1.1), ("cold", 0.2)):
        for model in ("genrec", "content_knn"):
            parts.append(metrics_frame({"recall@10": 0.08 * scale, "ndcg@10": 0.04 * scale}, model=model,
                                       split="test", dataset="beauty", segment=seg))
    return pd.concat(parts[::-1], ignore_index=True)  # cold rows first: the table puts all, warm, cold


def test_metrics_table_by_segment_with_published_rows_beside_all():
    table = metrics_table(_segmented(), {"TIGER (published)": {"recall@10": 0.0648}}, anchor_dataset="beauty")
    assert list(table.columns) == ["dataset", "model", "split", "segment", "source", "ndcg@10", "recall@10"]
    assert table[["model", "segment", "source"]].values.tolist() == [
        ["content_knn", "all", "measured"], ["genrec", "all", "measured"], ["TIGER (published)", "all", "published"],
        ["content_knn", "warm", "measured"], ["genrec", "warm", "measured"],
        ["content_knn", "cold", "measured"], ["genrec", "cold", "measured"]]
    assert table.loc[6, "recall@10"] == pytest.approx(0.016)
    # a frame without a segment column (a table from before segments) is all users, shown as before
    assert "segment" not in metrics_table(_metrics(), {}).columns


def test_write_report_draws_a_row_of_panels_per_segment(tmp_path):
    write_report(tmp_path / "seg", _segmented(), anchor_dataset="beauty")
    write_report(tmp_path / "one", _metrics(), anchor_dataset="beauty")
    with Image.open(tmp_path / "seg" / "metrics_bar.png") as seg, Image.open(tmp_path / "one" / "metrics_bar.png") as one:
        assert seg.size[1] == 3 * one.size[1] and seg.size[0] == one.size[0]
