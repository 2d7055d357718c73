"""GPU paths: onnxruntime's CUDA provider decodes the same lists as the CPU provider, and the trainer
learns on a CUDA device. Marked `gpu`; each test skips (with its reason) where no CUDA device is visible,
so the default run collects them everywhere and runs them only on GPU machines."""
import numpy as np
import pandas as pd
import pytest
import torch

from genrec_model.decode.ort_step import cuda_device_visible

pytestmark = pytest.mark.gpu


def _torch_cuda() -> None:
    if not (cuda_device_visible() and torch.cuda.is_available()):
        pytest.skip("no CUDA device visible to torch")


def _ort_cuda() -> None:
    ort = pytest.importorskip("onnxruntime")
    if not cuda_device_visible():
        pytest.skip("no CUDA device visible")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (onnxruntime-gpu not installed)")


def test_ort_cuda_decoding_matches_cpu(tmp_path):
    _ort_cuda()
    from genrec_model.decode.config import BeamSearchConfig
    from genrec_model.model.artifacts import write_export_manifest
    from genrec_model.model.config import SeqModelConfig
    from genrec_model.model.export import export_onnx, export_shared_step
    from genrec_model.model.seq_model import SeqModel
    from genrec_model.model.sid_vocab import SidVocab
    from genrec_model.serve.config import ServingConfig
    from udfs.recommend_fns import DecodeInputs, build_decoder, recommend_users

    vocab = SidVocab((8, 8, 4))
    torch.manual_seed(0)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=2, n_head=2, d_model=32, d_ff=64,
                                    dropout=0.0)).eval()
    with torch.no_grad():
        model.wte.weight.mul_(20.0)  # well separated scores: the order is not decided by rounding
    write_export_manifest(str(tmp_path), export_onnx(model, vocab, str(tmp_path), "m1", "cb1"))
    export_shared_step(model, tmp_path)
    rng = np.random.default_rng(0)
    codes = np.unique(np.stack([rng.integers(0, s, 200) for s in vocab.level_sizes], 1), axis=0)
    item_ids = np.array([f"i{n}" for n in range(len(codes))])
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(20)],  # > users_per_call: several calls
                          "history": [list(rng.choice(item_ids, size=1 + u % 7, replace=False)) for u in range(20)]})
    inputs = DecodeInputs(np.arange(len(codes), dtype=float), BeamSearchConfig(beam_width=10, top_k=10),
                          ServingConfig(top_k=5, filter_seen=True))

    cpu = build_decoder(str(tmp_path), item_ids, codes, 20, 1, False, "cb1")
    gpu = build_decoder(str(tmp_path), item_ids, codes, 20, 1, True, "cb1")
    assert cpu.step_model.prefill_sess.get_providers() == ["CPUExecutionProvider"]
    assert gpu.step_model.prefill_sess.get_providers()[0] == "CUDAExecutionProvider"  # no silent CPU fallback
    assert gpu.step_model.step_sess.get_providers()[0] == "CUDAExecutionProvider"
    want = recommend_users(users, cpu, inputs)
    got = recommend_users(users, gpu, inputs)
    assert [[r["item_id"] for r in recs] for recs in got["recs"]] == \
           [[r["item_id"] for r in recs] for recs in want["recs"]]
    np.testing.assert_allclose([[r["score"] for r in recs] for recs in got["recs"]],
                               [[r["score"] for r in recs] for recs in want["recs"]], atol=1e-3)
    assert all(len(recs) == 5 for recs in got["recs"])


def test_torch_training_on_cuda_reduces_the_loss(tmp_path):
    _torch_cuda()
    from genrec_model.model.config import SeqDataConfig, SeqModelConfig, TrainConfig
    from genrec_model.model.seq_model import SeqModel
    from genrec_model.model.sid_vocab import SidVocab
    from genrec_model.model.train_data import rec_sequences
    from genrec_model.model.trainer import train

    vocab = SidVocab((5, 2))
    item_tokens = vocab.codes_to_tokens(np.array([[i // 2, i % 2] for i in range(10)]))
    seqs = [np.arange(10) for _ in range(16)]  # every user walks the chain 0 -> 1 -> ... -> 9
    data = rec_sequences(seqs, item_tokens, SeqDataConfig(max_history=12))
    torch.manual_seed(0)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=2, d_model=32, d_ff=64,
                                    dropout=0.0, max_positions=32))
    devices = []
    cfg = TrainConfig(lr=1e-2, warmup_steps=2, batch_size=8, epochs=8, patience=8, monitor="steps",
                      progress=False, weight_decay=0.0, device="cuda", bf16=False)
    res = train(model, lambda e: data, lambda m: devices.append(next(m.parameters()).device.type) or {"steps": 0.0},
                cfg, out_dir=str(tmp_path))
    assert set(devices) == {"cuda"} and next(model.parameters()).device.type == "cuda"
    assert len(res.history) == 8 and res.precision == "fp32"
    assert res.history[-1]["train_loss"] < 0.5 * res.history[0]["train_loss"]  # ~0.25 on CPU with these seeds
