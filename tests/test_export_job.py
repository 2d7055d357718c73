"""The export job's release gate: a failed parity check publishes nothing the recommend job could load."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genrec_model.config import load_config
from genrec_model.model.artifacts import EXPORT_MANIFEST, read_export, read_model
from genrec_model.model.config import SeqModelConfig
from genrec_model.model.model_store import save_model
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab
from jobs import export as export_job


def _ctx(tmp_path, tolerance):
    cfg = load_config("conf/local.yaml", [f"artifacts.root={tmp_path}", f"export.parity_tolerance={tolerance}",
                                          "export.shared_prefix_step=false"])
    return SimpleNamespace(cfg=cfg, counts={})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    vocab = SidVocab((4, 4))
    torch.manual_seed(0)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=2, d_model=8, d_ff=16))
    codes = np.array([[0, 0], [1, 2], [3, 3]])
    save_model(str(root / "models"), "m1", model, vocab, np.array(["a", "b", "c"]), codes,
               {"codebook_version": "cb1", "fit_config": {"data": {"max_history": 5}}})
    return root


def test_failed_parity_publishes_nothing_then_a_passing_export_does(trained):
    onnx_dir = read_model(str(trained / "models")).onnx_dir
    with pytest.raises(RuntimeError, match="parity check failed"):
        export_job.run(_ctx(trained, -1.0))  # no difference can pass a negative tolerance
    assert os.path.exists(os.path.join(onnx_dir, "prefill.onnx"))  # the graphs were written ...
    assert not os.path.exists(os.path.join(onnx_dir, EXPORT_MANIFEST))  # ... but not published
    with pytest.raises(FileNotFoundError, match="parity gate"):
        read_export(onnx_dir)
    ctx = _ctx(trained, 1e-4)
    export_job.run(ctx)
    manifest = read_export(onnx_dir, "cb1")
    assert manifest["parity_max_abs_diff"]["step"] <= 1e-4 and ctx.counts["onnx.parity_max_abs_diff"] <= 1e-4
    with pytest.raises(RuntimeError):  # a failing re-export unpublishes the previous one
        export_job.run(_ctx(trained, -1.0))
    assert not os.path.exists(os.path.join(onnx_dir, EXPORT_MANIFEST))
