"""The architecture the tree promises: a torch-free config and decode path, stage packages.

The decode check runs in a subprocess where `import torch` raises, as on an executor that only has
onnxruntime, numpy, numba and pyarrow, and must give the same lists as this process."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_config_imports_neither_torch_nor_numba():
    loaded = json.loads(_run("""
        import json, sys
        from genrec_model.config import load_config
        cfg = load_config("conf/beauty.yaml")
        print(json.dumps(sorted(m for m in ("torch", "numba", "onnxruntime") if sys.modules.get(m))))
    """))
    assert loaded == []


def test_genrec_model_top_level_is_small():
    modules = [p for p in (ROOT / "genrec_model").glob("*.py") if p.name != "__init__.py"]
    packages = [p for p in (ROOT / "genrec_model").iterdir() if (p / "__init__.py").exists()]
    assert len(modules) <= 8, modules
    assert {p.name for p in packages} >= {"data", "catalog", "model", "decode", "serve", "evaluation", "baselines"}


def test_recommend_partition_decodes_without_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from genrec_model.decode.config import BeamSearchConfig
    from genrec_model.model.artifacts import write_export_manifest
    from genrec_model.model.config import SeqModelConfig
    from genrec_model.model.export import export_onnx, export_shared_step
    from genrec_model.model.seq_model import SeqModel
    from genrec_model.model.sid_vocab import SidVocab
    from genrec_model.serve.config import ServingConfig
    from udfs.recommend_fns import DecodeInputs, build_decoder, recommend_users

    vocab = SidVocab((4, 4, 3))
    torch.manual_seed(0)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=2, d_model=16, d_ff=32,
                                    dropout=0.0)).eval()
    with torch.no_grad():
        model.wte.weight.mul_(50.0)  # distinct scores, so the order is not decided by ties
    write_export_manifest(str(tmp_path), export_onnx(model, vocab, str(tmp_path), "m1", "cb1"))
    export_shared_step(model, tmp_path)
    rng = np.random.default_rng(0)
    codes = np.unique(np.stack([rng.integers(0, s, 40) for s in vocab.level_sizes], 1), axis=0)
    item_ids = np.array([f"i{n}" for n in range(len(codes))])
    np.save(tmp_path / "codes.npy", codes)
    np.save(tmp_path / "item_ids.npy", item_ids)
    users = pd.DataFrame({"user_id": ["u0", "u1", "u2"], "history": [["i0", "i3"], ["i5"], []]})
    users.to_json(tmp_path / "users.json")

    dec = build_decoder(str(tmp_path), item_ids, codes, 20, 1, False, "cb1")
    inputs = DecodeInputs(np.arange(len(codes), dtype=float), BeamSearchConfig(beam_width=6, top_k=6),
                          ServingConfig(top_k=4))
    expected = recommend_users(users, dec, inputs)["recs"].tolist()

    got = json.loads(_run(f"""
        import json, sys
        import numpy as np, pandas as pd
        from genrec_model.decode.config import BeamSearchConfig
        from genrec_model.serve.config import ServingConfig
        from udfs.recommend_fns import DecodeInputs, build_decoder, recommend_users
        d = {str(tmp_path)!r}
        codes, ids = np.load(d + "/codes.npy"), np.load(d + "/item_ids.npy")
        dec = build_decoder(d, ids, codes, 20, 1, False, "cb1")
        inputs = DecodeInputs(np.arange(len(codes), dtype=float), BeamSearchConfig(beam_width=6, top_k=6),
                              ServingConfig(top_k=4))
        out = recommend_users(pd.read_json(d + "/users.json"), dec, inputs)
        assert "torch" not in {{m for m, v in sys.modules.items() if v is not None}}
        print(json.dumps([[dict(r) for r in recs] for recs in out["recs"]]))
    """))
    assert got == [[dict(r) for r in recs] for recs in expected]
    assert all(len(r) == 4 for r in got)
