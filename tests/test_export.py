import json

import numpy as np
import pytest
import torch

from genrec_model.decode.ort_step import OrtStepModel
from genrec_model.model.config import ExportConfig, SeqModelConfig
from genrec_model.model.artifacts import ManifestMismatchError, export_manifest, read_export, write_export_manifest
from genrec_model.model.export import export_onnx
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab
from genrec_model.model.torch_step import TorchStepModel

VOCAB = SidVocab((8, 8, 4))
MCFG = SeqModelConfig(vocab_size=VOCAB.vocab_size, n_layer=2, n_head=2, d_model=16, d_ff=32, max_positions=64)


def test_manifest_codebook_mismatch_is_a_clear_error(tmp_path):
    write_export_manifest(str(tmp_path), export_manifest(VOCAB, MCFG.to_dict(), "m7", "cb-2026-01", 18, {"prefill": "dynamo"}, "x"))
    m = read_export(str(tmp_path), expected_codebook_version="cb-2026-01")
    assert m["vocab"]["level_sizes"] == [8, 8, 4] and m["model_version"] == "m7"
    with pytest.raises(ManifestMismatchError, match="codebook version 'cb-2026-01'.*version 'cb-2026-02'"):
        read_export(str(tmp_path), expected_codebook_version="cb-2026-02")


def test_manifest_edited_or_missing(tmp_path):
    write_export_manifest(str(tmp_path), export_manifest(VOCAB, MCFG.to_dict(), "m7", "cb1", 18, {}, "x"))
    path = tmp_path / "manifest.json"
    m = json.loads(path.read_text())
    m["vocab"]["level_sizes"] = [8, 8, 5]
    m["model_config"]["vocab_size"] += 1
    path.write_text(json.dumps(m))
    with pytest.raises(ManifestMismatchError, match="config_hash"):
        read_export(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        read_export(str(tmp_path / "nothing"))


@pytest.mark.parametrize("prefer_dynamo", [True, False])
def test_onnx_matches_torch_prefill_and_cached_steps(tmp_path, prefer_dynamo):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = SeqModel(MCFG).eval()
    man = export_onnx(model, VOCAB, str(tmp_path), "m1", "cb1", ExportConfig(prefer_dynamo=prefer_dynamo))
    assert man["opset"] == 18
    if not prefer_dynamo:
        assert man["exporter"] == {"prefill": "torchscript", "step": "torchscript"}
    assert not (tmp_path / "manifest.json").exists()  # unpublished until the caller's parity gate
    write_export_manifest(str(tmp_path), man)
    ort_m, pt_m = OrtStepModel(str(tmp_path), expected_codebook_version="cb1"), TorchStepModel(model)
    rng = np.random.default_rng(0)
    for B, T in ((3, 7), (1, 2), (5, 11)):  # batch and length differ from the export sample
        ids = rng.integers(3, VOCAB.sid_end, (B, T))
        lengths = rng.integers(1, T + 1, B)
        mask = (np.arange(T)[None, :] >= (T - lengths)[:, None]).astype(np.int64)
        pos = np.maximum(mask.cumsum(1) - 1, 0)
        a, sa = ort_m.prefill(ids, mask, pos)
        b, sb = pt_m.prefill(ids, mask, pos)
        assert a.shape == (B, VOCAB.vocab_size)
        assert np.abs(a - b).max() <= 1e-4
        rows = np.repeat(np.arange(B), 3)  # expand to 3 beams per user
        sa, sb = ort_m.reorder(sa, rows), pt_m.reorder(sb, rows)
        for _ in range(4):
            tok = rng.integers(3, VOCAB.sid_end, len(rows))
            a, sa = ort_m.step(tok, sa)
            b, sb = pt_m.step(tok, sb)
            assert np.abs(a - b).max() <= 1e-4
        assert sa.past_k.shape == (2, len(rows), 2, T + 4, 8)
