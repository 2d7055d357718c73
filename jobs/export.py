"""Stage `export`: the trained model -> ONNX graphs for beam decoding (prefill = history encoded once
per user, step = one token with KV cache), parity-checked against PyTorch before release.

    spark-submit jobs/export.py --conf conf/beauty.yaml [export.model_version=m-...]

The manifest is what makes an export loadable (recommend reads it first); it is written only after
the parity gate passed, and any earlier manifest is removed before the graphs are rewritten.
"""
from __future__ import annotations

import os
import sys

from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from genrec_model.decode.ort_step import OrtStepModel, load_step_model
    from genrec_model.model.artifacts import EXPORT_MANIFEST, read_export, write_export_manifest
    from genrec_model.model.export import export_onnx, export_shared_step
    from genrec_model.model.model_store import load_model
    from genrec_model.model.parity import parity_max_abs_diff
    from genrec_model.model.torch_step import TorchStepModel

    cfg = ctx.cfg.export
    bundle = load_model(ctx.cfg.artifact_path("models"), cfg.model_version)
    version, codebook = bundle.manifest["model_version"], bundle.manifest["codebook_version"]
    out_dir = os.path.join(bundle.path, "onnx")
    if os.path.exists(os.path.join(out_dir, EXPORT_MANIFEST)):
        os.remove(os.path.join(out_dir, EXPORT_MANIFEST))  # unpublish: a failed re-export leaves nothing loadable
    manifest = export_onnx(bundle.model, bundle.vocab, out_dir, version, codebook, cfg,
                           extra={"config_hash_run": ctx.cfg.config_hash(), "dataset": ctx.cfg.data.dataset})
    if cfg.shared_prefix_step:
        export_shared_step(bundle.model, out_dir, cfg.opset)
    reference = TorchStepModel(bundle.model, "cpu")
    diffs = {"step": parity_max_abs_diff(reference, OrtStepModel(out_dir, manifest=manifest), bundle.vocab)}
    if cfg.shared_prefix_step:
        diffs["step_shared"] = parity_max_abs_diff(reference, load_step_model(out_dir, manifest=manifest), bundle.vocab)
    worst = max(diffs.values())
    ctx.counts.update({"parity_max_abs_diff": worst, "vocab_size": bundle.vocab.vocab_size})
    log_event("export", "parity", model_version=version, path=out_dir, parity=worst,
              exporter=manifest["exporter"]["prefill"])
    if worst > cfg.parity_tolerance:
        raise RuntimeError(f"ONNX parity check failed: max |logit diff| {worst:.2e} > {cfg.parity_tolerance:.0e} "
                           f"({diffs}); the export was not published")
    manifest["parity_max_abs_diff"] = diffs
    write_export_manifest(out_dir, manifest)
    read_export(out_dir, codebook)  # what the recommend job will check
    log_event("export", "published", model_version=version, path=out_dir)


if __name__ == "__main__":
    sys.exit(main_for("export", run))
