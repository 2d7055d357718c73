"""Reserved new-item slots through the decode path (udfs/recommend_fns): TIGER's cold-start protocol."""
import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("normalize,shared", [("level", False), ("children", False), ("children", True)])
def test_reserved_slots_hold_the_best_new_items_with_the_models_own_scores(tmp_path, normalize, shared):
    """children + shared: the fused head, whose new-item search must still normalize over warm siblings."""
    from genrec_model.decode.config import BeamSearchConfig
    from genrec_model.model.artifacts import write_export_manifest
    from genrec_model.model.config import SeqModelConfig
    from genrec_model.model.export import export_onnx, export_shared_step
    from genrec_model.model.seq_model import SeqModel
    from genrec_model.model.sid_vocab import SidVocab
    from genrec_model.serve.config import ServingConfig
    from udfs.recommend_fns import DecodeInputs, build_decoder, recommend_batch, recommend_users

    vocab = SidVocab((4, 4, 3))
    torch.manual_seed(0)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=2, d_model=16, d_ff=32,
                                    dropout=0.0)).eval()
    with torch.no_grad():
        model.wte.weight.mul_(50.0)
    write_export_manifest(str(tmp_path), export_onnx(model, vocab, str(tmp_path), "m1", "cb1"))
    if shared:
        export_shared_step(model, tmp_path)
    rng = np.random.default_rng(0)
    codes = np.unique(np.stack([rng.integers(0, s, 40) for s in vocab.level_sizes], 1), axis=0)
    item_ids = np.array([f"i{n}" for n in range(len(codes))])
    seen = np.ones(len(codes), dtype=bool)
    seen[::4] = False  # every 4th item is new tonight
    users = pd.DataFrame({"user_id": ["u0", "u1"], "history": [["i1", "i3"], ["i5"]]})
    every = BeamSearchConfig(beam_width=len(codes), top_k=len(codes), normalize=normalize)  # exact: every item scored
    dec = build_decoder(str(tmp_path), item_ids, codes, 20, 1, False, "cb1", seen)
    full = recommend_users(users, dec, DecodeInputs(np.ones(len(codes)), every, ServingConfig(top_k=len(codes))))
    k = 6
    got = recommend_users(users, dec, DecodeInputs(np.ones(len(codes)), every, ServingConfig(top_k=k, new_item_share=0.5),
                                                   new_item_beam=BeamSearchConfig(beam_width=8, top_k=8, normalize=normalize)))
    is_new = dict(zip(item_ids, ~seen))
    for ranked, recs in zip(full["recs"], got["recs"]):
        order = [r["item_id"] for r in ranked]
        score = {r["item_id"]: r["score"] for r in ranked}
        head = order[:k - 3]
        best_new = [i for i in order if is_new[i] and i not in head][:3]
        assert [r["item_id"] for r in recs] == head + best_new
        for r in recs:  # the new-item search scores items exactly as the main search does
            assert r["score"] == pytest.approx(score[r["item_id"]], abs=1e-5)
    plain = recommend_users(users, dec, DecodeInputs(np.ones(len(codes)), every, ServingConfig(top_k=k)))
    assert [[r["item_id"] for r in x] for x in plain["recs"]] == [[r["item_id"] for r in x][:k] for x in full["recs"]]
    # the Arrow path of the Spark job builds the same lists (ranks, scores, flags) without Python rows
    import pyarrow as pa

    users3 = pd.DataFrame({"user_id": ["u0", "u1", "u2"], "history": [["i1", "i3"], ["i5"], ["unknown"]]})
    inputs = DecodeInputs(np.ones(len(codes)), every, ServingConfig(top_k=k, new_item_share=0.5),
                          new_item_beam=BeamSearchConfig(beam_width=8, top_k=8, normalize=normalize))
    want = recommend_users(users3, dec, inputs)
    batch = recommend_batch(pa.RecordBatch.from_pandas(users3, preserve_index=False), dec, inputs)
    assert batch.column("recs").to_pylist() == [list(r) for r in want["recs"]]
    assert batch.column("is_fallback").to_pylist() == want["is_fallback"].tolist() == [False, False, True]
    assert batch.column("n_known").to_pylist() == want["n_known"].tolist()
    # serving.judge_weight re-ranks the decoded candidates by log-prob + weight * judge score: a judge that only
    # values popularity, weighted heavily, orders each list by popularity (items already seen removed)
    from genrec_model.align.config import JudgeConfig
    from genrec_model.align.judge import ASPECTS, ItemSide, SemanticJudge

    pop = rng.permutation(2.0 ** np.arange(len(codes)))
    side = ItemSide.build(rng.normal(size=(len(codes), 8)), pop, codes[:, 0])
    bias = np.full(len(ASPECTS), -50.0)
    bias[ASPECTS.index("popularity")] = 50.0
    judge = SemanticJudge(np.zeros((10, len(ASPECTS))), bias, np.zeros(len(ASPECTS)), np.ones(len(ASPECTS)),
                          JudgeConfig())
    judged = recommend_users(users, dec, DecodeInputs(np.ones(len(codes)), every,
                                                      ServingConfig(top_k=k, judge_weight=1e6), judge=(judge, side)))
    for h, recs in zip(users["history"], judged["recs"]):
        by_pop = [item_ids[i] for i in np.argsort(-pop, kind="stable") if item_ids[i] not in h]
        assert [r["item_id"] for r in recs] == by_pop[:k]
    with pytest.raises(ValueError, match="judge"):
        recommend_users(users, dec, DecodeInputs(np.ones(len(codes)), every, ServingConfig(top_k=k, judge_weight=1.0)))
