"""Load SeqModel weights into transformers.GPT2LMHeadModel (same logits), e.g. to compare our
decoder with HF `generate(num_beams=..., prefix_allowed_tokens_fn=...)` on identical weights."""
from __future__ import annotations

import torch

from genrec_model.model.seq_model import SeqModel


def hf_gpt2_config(model: SeqModel):
    from transformers import GPT2Config

    c = model.cfg
    return GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.max_positions,
        n_embd=c.d_model,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_inner=c.d_ff,
        activation_function="gelu_new",  # tanh approximation, as SeqModel's MLP
        resid_pdrop=c.dropout,
        embd_pdrop=c.dropout,
        attn_pdrop=c.dropout,
        layer_norm_epsilon=c.layer_norm_eps,
        tie_word_embeddings=c.tie_weights,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def to_hf_gpt2(model: SeqModel):
    """A GPT2LMHeadModel (eval mode) holding a copy of `model`'s weights."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel(hf_gpt2_config(model))
    sd = {
        "transformer.wte.weight": model.wte.weight,
        "transformer.wpe.weight": model.wpe.weight,
        "transformer.ln_f.weight": model.ln_f.weight,
        "transformer.ln_f.bias": model.ln_f.bias,
        "lm_head.weight": model.output_table(),
    }
    for i, b in enumerate(model.h):
        p = f"transformer.h.{i}."
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = b.ln_1.weight, b.ln_1.bias
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = b.ln_2.weight, b.ln_2.bias
        # HF Conv1D stores (in, out): the transpose of nn.Linear's weight.
        for hf_name, lin in (("attn.c_attn", b.attn.c_attn), ("attn.c_proj", b.attn.c_proj),
                             ("mlp.c_fc", b.mlp.c_fc), ("mlp.c_proj", b.mlp.c_proj)):
            sd[p + hf_name + ".weight"] = lin.weight.t()
            sd[p + hf_name + ".bias"] = lin.bias
    with torch.no_grad():
        missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    missing = [m for m in missing if not m.endswith(".attn.bias") and not m.endswith("masked_bias")]
    if missing or unexpected:
        raise RuntimeError(f"GPT-2 weight mapping incomplete: missing={missing} unexpected={unexpected}")
    return hf.eval()
