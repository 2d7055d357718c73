"""Stage `export`: the trained model -> ONNX graphs for beam decoding (prefill = history encoded once
per user, step = one token with KV cache), parity-checked against PyTorch before release.

    spark-submit jobs/export.py --conf conf/beauty.yaml [export.model_version=m-...]

The manifest is what makes an export loadable (recommend reads it first); it is written only after
the parity gate passed, and any earlier manifest is removed before the graphs are rewritten.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from genrec_model.model.artifacts import EXPORT_MANIFEST, ONNX_DIR, ONNX_SERVING_DIR, read_export, write_export_manifest
    from genrec_model.model.model_store import load_model

    cfg = ctx.cfg.export
    bundle = load_model(ctx.cfg.artifact_path("models"), cfg.model_version)
    version, codebook = bundle.manifest["model_version"], bundle.manifest["codebook_version"]
    targets = {ONNX_DIR: bundle.model}
    if bundle.serving_model is not None:
        targets[ONNX_SERVING_DIR] = bundle.serving_model
    for name in targets:  # unpublish: a failed re-export leaves nothing loadable
        if os.path.exists(os.path.join(bundle.path, name, EXPORT_MANIFEST)):
            os.remove(os.path.join(bundle.path, name, EXPORT_MANIFEST))
    catalog = _for_tonights_catalog(ctx, bundle) if bundle.model.cfg.item_content_dim else None
    staged = {name: _export_checked(ctx, bundle, model, catalog, os.path.join(bundle.path, name))
              for name, model in targets.items()}
    for name, manifest in staged.items():  # publish only once every graph passed its gate
        out_dir = os.path.join(bundle.path, name)
        write_export_manifest(out_dir, manifest)
        read_export(out_dir, codebook)  # what the recommend job will check
        log_event("export", "published", model_version=version, path=out_dir)


def _export_checked(ctx: JobContext, bundle, model, catalog, out_dir: str) -> dict:
    """Graphs of `model` (materialized for `catalog` when it is a content model) in out_dir, checked
    against torch; returns the manifest to publish, raises when parity fails."""
    from genrec_model.decode.ort_step import OrtStepModel, load_step_model
    from genrec_model.model.artifacts import write_export_items
    from genrec_model.model.export import export_onnx, export_shared_step, quantize_int8
    from genrec_model.model.item_content import materialize
    from genrec_model.model.parity import parity_max_abs_diff
    from genrec_model.model.torch_step import TorchStepModel

    cfg = ctx.cfg.export
    version, codebook = bundle.manifest["model_version"], bundle.manifest["codebook_version"]
    vocab, item_ids, codes = bundle.vocab, bundle.item_ids, bundle.codes
    if catalog is not None:  # content items: the graphs cover tonight's catalog, new items included
        vocab, item_ids, codes, content = catalog
        model = materialize(model, vocab, codes, content)
    seen = np.isin(item_ids, bundle.item_ids)
    manifest = export_onnx(model, vocab, out_dir, version, codebook, cfg,
                           extra={"config_hash_run": ctx.cfg.config_hash(), "dataset": ctx.cfg.data.dataset,
                                  "items": len(item_ids), "items_new_since_training": int((~seen).sum())})
    write_export_items(out_dir, item_ids, codes, seen)
    if cfg.shared_prefix_step:
        export_shared_step(model, out_dir, cfg.opset)
    if cfg.int8:
        manifest["int8"] = quantize_int8(out_dir)
    reference = TorchStepModel(model, "cpu")
    diffs = {"step": parity_max_abs_diff(reference, OrtStepModel(out_dir, manifest=manifest), vocab)}
    if cfg.shared_prefix_step:
        diffs["step_shared"] = parity_max_abs_diff(reference, load_step_model(out_dir, manifest=manifest), vocab)
    worst = max(diffs.values())
    name = os.path.basename(out_dir)
    ctx.counts.update({f"{name}.parity_max_abs_diff": worst, "vocab_size": vocab.vocab_size, "items": len(item_ids),
                       "items_new_since_training": int((~seen).sum())})
    log_event("export", "parity", model_version=version, path=out_dir, parity=worst,
              exporter=manifest["exporter"]["prefill"])
    tolerance = cfg.int8_parity_tolerance if cfg.int8 else cfg.parity_tolerance
    if worst > tolerance:
        raise RuntimeError(f"ONNX parity check failed for {name}: max |logit diff| {worst:.2e} > "
                           f"{tolerance:.0e} ({diffs}); nothing was published")
    manifest["parity_max_abs_diff"] = diffs
    return manifest


def _for_tonights_catalog(ctx: JobContext, bundle):
    """(vocabulary, item_ids, codes, content) of the current item_sids, for materializing a content model:
    items coded since training get their embedding from their text like every other."""
    from genrec_model.catalog.sid_codes import level_sizes_of
    from genrec_model.data.schemas import CATALOG, ITEM_EMBEDDINGS, ITEM_SIDS
    from genrec_model.model.sid_vocab import SidVocab
    from udfs.sequence_fns import issued_codes, item_content, item_table

    items = item_table(ctx.read(ITEM_SIDS), ctx.read(CATALOG))
    if items["codebook_version"].iloc[0] != bundle.manifest["codebook_version"]:
        raise RuntimeError(f"model {bundle.manifest['model_version']} was trained on codebook "
                           f"{bundle.manifest['codebook_version']!r}, item_sids holds {items['codebook_version'].iloc[0]!r}: "
                           "retrain on the current SIDs (nothing was exported)")
    codes = np.stack(items["codes"].to_numpy()).astype(np.int64)
    trained = bundle.vocab.level_sizes
    sizes = level_sizes_of(np.vstack([issued_codes(ctx.read(ITEM_SIDS)), bundle.codes]), trained[0])
    vocab = SidVocab(tuple(sizes), task_tokens=bundle.vocab.task_tokens, n_extra=bundle.vocab.n_extra)
    if tuple(sizes[:-1]) != tuple(trained[:-1]):
        raise RuntimeError(f"semantic level sizes {sizes[:-1]} differ from training's {list(trained[:-1])}")
    content = item_content(ctx.read(ITEM_EMBEDDINGS), items["item_id"].tolist())
    return vocab, items["item_id"].to_numpy(), codes, content


if __name__ == "__main__":
    sys.exit(main_for("export", run))
