"""Training the slide MIL model on a cohort manifest, with patient-level splits.

The cohort is any folder whose manifest (:func:`schemas.manifest.read_manifest` columns) lists H&E
slides (``modality == "WSI"``) with a ``phenotype`` and a ``til_density_per_mm2`` label; the virtual
clinic writes one. Steps: read and encode every slide's tissue tiles (in worker processes, with
an optional on-disk feature cache), split patients (never slides) into train / validation /
test stratified by phenotype, fit :class:`~models.pathology.mil.GatedAttentionMIL` with early
stopping on the validation loss, evaluate on the held-out patients, write the report and, when
a models folder is given, save the artefact (:func:`models.registry.save_artifact`). The
checkpoint also carries the training slides' out-of-distribution reference
(:class:`~models.pathology.ood.OodReference`, fitted on the training part only) and their
phenotype frequencies, which inference uses to measure how far a new slide lies from them and to
widen its uncertainty accordingly.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.exceptions import InsufficientDataError, UnreadableInputError, UnsuitableInputError
from models.pathology import evaluate
from models.pathology.bag import SlideBag, SlideRecord
from models.pathology.encoders import (
    Encoder,
    HandcraftedEncoder,
    encoder_from_spec,
    lymphocyte_density,
)
from models.pathology.mil import PHENOTYPES, GatedAttentionMIL, MILConfig, pad_bags
from models.pathology.ood import OodReference, bag_embedding
from models.pathology.slide import TileSpec, read_tiles, tile_index
from models.registry import ModelArtifact, save_artifact
from models.runtime import device as torch_device
from models.runtime import set_threads
from schemas.enums import ImmunePhenotype
from schemas.manifest import read_manifest

log = logging.getLogger(__name__)

MODEL_NAME = "pathology-mil"
WEIGHTS_FILE = "pathology-mil.pt"
CHECKPOINT_FORMAT = "irtmon-pathology-mil/1"

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``"features"``, ``"epochs"``."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run (all of it is recorded in the model card).

    Parameters
    ----------
    seed
        Seeds the patient split, initialisation, batching and tile dropout.
    max_epochs, patience
        Early stopping: stop when the validation loss has not improved for ``patience`` epochs;
        the best epoch's weights are kept.
    lr, weight_decay, batch_size
        AdamW settings and slides per batch.
    til_weight
        Weight of the TIL regression loss beside the phenotype cross-entropy.
    tile_dropout
        Fraction of a bag's tiles dropped at random in each training step (augmentation).
    val_fraction, test_fraction
        Patient fractions held out, stratified by phenotype.
    hidden, attention_dim, dropout, n_branches
        Model sizes (:class:`~models.pathology.mil.MILConfig`).
    attention_guidance
        Weight of the loss pulling the heat-map attention branch towards tiles where the
        lymphocyte detector fires (KL divergence to ``softmax(z(log1p density) / guidance_tau)``);
        0 leaves the attention unguided.
    guidance_tau
        Temperature of that target: smaller concentrates it on the densest tiles.
    """

    seed: int = 1
    max_epochs: int = 300
    patience: int = 40
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 8
    til_weight: float = 1.0
    tile_dropout: float = 0.3
    val_fraction: float = 0.2
    test_fraction: float = 0.3
    hidden: int = 64
    attention_dim: int = 32
    dropout: float = 0.25
    n_branches: int = 2
    attention_guidance: float = 0.5
    guidance_tau: float = 0.5


@dataclass
class FitResult:
    """A fitted model and its learning curve."""

    model: GatedAttentionMIL
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool


@dataclass
class TrainingRun:
    """Everything a training run produced."""

    model: GatedAttentionMIL
    weights_path: Path
    metrics: dict[str, Any]
    split: dict[str, str]
    report_files: dict[str, Path]
    fit: FitResult
    artifact: ModelArtifact | None = None
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- data


def slides_from_manifest(
    cohort_dir: Path | str, manifest: pd.DataFrame | None = None
) -> list[SlideRecord]:
    """The labelled H&E slides of a cohort, in manifest order."""

    cohort_dir = Path(cohort_dir)
    frame = read_manifest(cohort_dir) if manifest is None else manifest
    frame = frame[frame["modality"] == "WSI"]
    if frame.empty:
        raise InsufficientDataError(f"the manifest of {cohort_dir} lists no WSI slides")
    records = []
    for row in frame.itertuples(index=False):
        path = Path(row.path)
        records.append(
            SlideRecord(
                slide_id=str(row.path),
                patient=str(row.patient),
                path=path if path.is_absolute() else cohort_dir / path,
                phenotype=ImmunePhenotype(row.phenotype),
                til_density=float(row.til_density_per_mm2),
            )
        )
    return records


@lru_cache(maxsize=4)
def _encoder_for(spec_json: str, device: str = "cpu") -> Encoder:
    return encoder_from_spec(json.loads(spec_json), device=device)


def _truth_path(slide: Path) -> Path:
    return slide.with_suffix(".tiles.parquet")


def encode_slide(
    record: SlideRecord, encoder_spec: dict[str, Any], tile_spec: TileSpec, device: str = "cpu"
) -> SlideBag:
    """Read and encode one slide's tissue tiles (and attach the clinic's tile truth); a
    checkpoint encoder runs on ``device``."""

    if encoder_spec.get("kind") != HandcraftedEncoder.kind:
        set_threads(1)
    encoder = _encoder_for(json.dumps(encoder_spec, sort_keys=True), device)
    tiles = read_tiles(record.path, tile_spec)
    feats = encoder.encode(tiles.tiles, tile_spec.mpp)
    guide = lymphocyte_density(
        tiles.tiles, tile_spec.mpp, feats if isinstance(encoder, HandcraftedEncoder) else None
    )
    grid = tile_index(tiles)
    count = truth_tissue = None
    truth = _truth_path(record.path)
    if truth.is_file() and tiles.tile_size_level0 == 256:
        frame = pd.read_parquet(truth).set_index(["row", "col"])
        sel = frame.reindex(list(map(tuple, grid)))
        count = sel["lymphocyte_count"].fillna(0).to_numpy(np.float64)
        truth_tissue = sel["tissue_fraction"].fillna(0).to_numpy(np.float64)
    return SlideBag(
        record=record,
        features=feats,
        coords=tiles.coords,
        grid_index=grid,
        tissue_fraction=tiles.tissue_fraction,
        tile_size_level0=tiles.tile_size_level0,
        dimensions=tiles.dimensions,
        lymphocyte_count=count,
        truth_tissue_fraction=truth_tissue,
        guide=guide.astype(np.float32),
    )


def _cache_key(record: SlideRecord, encoder_spec: dict[str, Any], tile_spec: TileSpec) -> str:
    st = record.path.stat()
    blob = json.dumps(
        [str(record.path.resolve()), st.st_size, st.st_mtime_ns, encoder_spec, asdict(tile_spec)],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _encode_star(args: tuple[SlideRecord, dict[str, Any], TileSpec, str]) -> SlideBag | str:
    record, spec, tile_spec, device = args
    try:
        return encode_slide(record, spec, tile_spec, device)
    except (InsufficientDataError, UnreadableInputError, UnsuitableInputError) as err:
        return f"{record.slide_id}: {err}"


def extract_bags(
    records: Sequence[SlideRecord],
    encoder: Encoder,
    tile_spec: TileSpec | None = None,
    *,
    workers: int = 1,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
) -> tuple[list[SlideBag], list[str]]:
    """Encode every slide; slides without enough tissue, unreadable or unsuitable (scanned too
    coarsely, past a reading limit) are skipped and named.

    A checkpoint encoder runs on ``device`` (:func:`models.runtime.device`); on a GPU the
    slides are encoded in this process, one after another (``workers`` processes would each
    hold a copy of the network on the one GPU).

    Returns
    -------
    bags, skipped
        Encoded slides in input order; ``"slide: reason"`` of each skipped slide.
    """
    import pickle

    tile_spec = tile_spec or TileSpec()
    spec = encoder.spec()
    on = "cpu" if spec.get("kind") == HandcraftedEncoder.kind else str(torch_device(device))
    if on != "cpu" and workers > 1:
        log.info("encoding on %s in this process (not in %d workers)", on, workers)
        workers = 1
    results: list[SlideBag | str | None] = [None] * len(records)
    todo = []
    for i, rec in enumerate(records):
        if cache_dir is not None:
            cached = cache_dir / f"{_cache_key(rec, spec, tile_spec)}.pkl"
            if cached.is_file():
                with open(cached, "rb") as f:
                    results[i] = pickle.load(f)
                continue
        todo.append(i)
    done = len(records) - len(todo)
    if progress:
        progress("features", done, len(records))
    args = [(records[i], spec, tile_spec, on) for i in todo]
    if workers > 1 and len(args) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            outputs = pool.map(_encode_star, args, chunksize=1)
            for i, out in zip(todo, outputs, strict=True):
                results[i] = out
                done += 1
                if progress:
                    progress("features", done, len(records))
    else:
        for i, a in zip(todo, args, strict=True):
            results[i] = _encode_star(a)
            done += 1
            if progress:
                progress("features", done, len(records))
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for i in todo:
            if isinstance(results[i], SlideBag):
                with open(cache_dir / f"{_cache_key(records[i], spec, tile_spec)}.pkl", "wb") as f:
                    pickle.dump(results[i], f)
    bags = [r for r in results if isinstance(r, SlideBag)]
    skipped = [r for r in results if isinstance(r, str)]
    for s in skipped:
        log.warning("skipped %s", s)
    return bags, skipped


def split_patients(
    patients: Sequence[str],
    phenotypes: Sequence[ImmunePhenotype | str],
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.3,
    seed: int = 1,
) -> dict[str, str]:
    """Assign each patient to ``"train"``, ``"val"`` or ``"test"``, stratified by phenotype.

    A patient's slides all land in the same part, so no patient is both trained and tested on.
    """
    by_patient: dict[str, str] = {}
    for p, ph in zip(patients, phenotypes, strict=True):
        by_patient.setdefault(p, str(ImmunePhenotype(ph)))
    rng = np.random.default_rng(seed)
    split: dict[str, str] = {}
    for ph in sorted(set(by_patient.values())):
        group = sorted(p for p, v in by_patient.items() if v == ph)
        rng.shuffle(group)
        n = len(group)
        n_test = round(n * test_fraction)
        n_val = round(n * val_fraction)
        if n >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        for k, p in enumerate(group):
            split[p] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    return split


# ----------------------------------------------------------------------------- fitting


def _targets(bags: Sequence[SlideBag]) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([PHENOTYPES.index(b.record.phenotype) for b in bags], dtype=np.int64)
    til = np.log1p(np.array([max(b.record.til_density, 0.0) for b in bags], dtype=np.float64))
    return y, til


def _guide_target(guides: Sequence[np.ndarray | None], mask: Any, tau: float) -> Any:
    """Attention target per bag from detected lymphocyte density; None if any bag lacks it."""
    import torch

    if any(g is None for g in guides):
        return None
    target = torch.zeros(mask.shape, dtype=torch.float32)
    for i, g in enumerate(guides):
        z = np.log1p(np.asarray(g, dtype=np.float64))
        z = (z - z.mean()) / max(z.std(), 0.25)
        p = np.exp((z - z.max()) / tau)
        target[i, : len(g)] = torch.as_tensor(p / p.sum(), dtype=torch.float32)
    return target


def fit_mil(
    train: Sequence[SlideBag],
    val: Sequence[SlideBag],
    config: TrainConfig,
    *,
    progress: Progress | None = None,
    device: str = "cpu",
) -> FitResult:
    """Fit a gated attention MIL model with early stopping on the validation loss.

    Trains on ``device`` (:func:`models.runtime.device`: ``cpu``, ``cuda``, ``auto``); the
    fitted model comes back on the CPU. Deterministic for a given seed, data, device and thread
    count (a GPU gives the same results within floating-point tolerance, not bit for bit).
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    if not train:
        raise InsufficientDataError("no training slides")
    set_threads(1)
    dev = torch_device(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    in_dim = train[0].features.shape[1]
    model = GatedAttentionMIL(
        MILConfig(
            in_dim=in_dim,
            hidden=config.hidden,
            attention_dim=config.attention_dim,
            dropout=config.dropout,
            n_branches=config.n_branches,
        )
    )
    all_tiles = np.concatenate([b.features for b in train])
    y_train, til_train = _targets(train)
    model.set_normalisation(
        all_tiles.mean(axis=0), all_tiles.std(axis=0), til_train.mean(), til_train.std()
    )
    model.to(dev)
    counts = np.bincount(y_train, minlength=len(PHENOTYPES)).astype(np.float64)
    class_weight = torch.tensor(
        np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(PHENOTYPES), 0.0),
        dtype=torch.float32,
        device=dev,
    )
    til_t = torch.tensor(
        (til_train - til_train.mean()) / max(til_train.std(), 1e-6), dtype=torch.float32, device=dev
    )
    y_t = torch.tensor(y_train, device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    val_eval = list(val) if val else list(train)
    y_val, til_val = _targets(val_eval)
    x_val, m_val = (t.to(dev) for t in pad_bags([b.features for b in val_eval]))
    g_val = _guide_target([b.guide for b in val_eval], m_val, config.guidance_tau)
    g_val = None if g_val is None else g_val.to(dev)
    til_val_t = torch.tensor(
        (til_val - til_train.mean()) / max(til_train.std(), 1e-6), dtype=torch.float32, device=dev
    )
    y_val_t = torch.tensor(y_val, device=dev)

    def loss_of(
        out: Any, y: torch.Tensor, til: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        ce = F.cross_entropy(out.logits, y, weight=class_weight)
        loss = ce + config.til_weight * F.mse_loss(out.til, til)
        if target is not None and config.attention_guidance > 0:
            log_att = torch.log(out.attention.clamp(min=1e-12))
            kl = (target * (torch.log(target.clamp(min=1e-12)) - log_att)).sum(dim=1).mean()
            loss = loss + config.attention_guidance * kl
        return loss

    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    history: list[dict[str, float]] = []
    stopped_early = False
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            bags, guides = [], []
            for i in idx:
                f = train[i].features
                keep = rng.uniform(size=len(f)) >= config.tile_dropout
                if keep.sum() < 2:
                    keep[:] = True
                bags.append(f[keep])
                g = train[i].guide
                guides.append(None if g is None else g[keep])
            x, m = (t.to(dev) for t in pad_bags(bags))
            out = model(x, m)
            target = _guide_target(guides, m, config.guidance_tau)
            target = None if target is None else target.to(dev)
            at = torch.as_tensor(idx, device=dev)
            loss = loss_of(out, y_t[at], til_t[at], target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            out = model(x_val, m_val)
            v_loss = float(loss_of(out, y_val_t, til_val_t, g_val))
            v_acc = float((out.logits.argmax(1).cpu().numpy() == y_val).mean())
        history.append(
            {"epoch": epoch, "train_loss": total / len(train), "val_loss": v_loss, "val_acc": v_acc}
        )
        if progress:
            progress("epochs", epoch, config.max_epochs)
        if v_loss < best[0] - 1e-4:
            best = (v_loss, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= config.patience:
            stopped_early = True
            break
    model.load_state_dict(best[2])
    model.to("cpu")
    model.eval()
    if progress:
        progress("epochs", len(history), len(history))
    return FitResult(model=model, history=history, best_epoch=best[1], stopped_early=stopped_early)


def ood_reference(bags: Sequence[SlideBag], *, seed: int = 1) -> OodReference | None:
    """The out-of-distribution reference of training bags; None for fewer than four."""
    if len(bags) < 4:
        log.warning("only %d training slides: no out-of-distribution reference saved", len(bags))
        return None
    return OodReference.fit(np.stack([bag_embedding(b.features) for b in bags]), seed=seed)


def class_prior(bags: Sequence[SlideBag]) -> list[float]:
    """Phenotype frequencies of the bags, in :data:`PHENOTYPES` order."""
    y, _ = _targets(bags)
    counts = np.bincount(y, minlength=len(PHENOTYPES)).astype(np.float64)
    return (counts / max(counts.sum(), 1.0)).tolist()


def save_checkpoint(
    path: Path,
    model: GatedAttentionMIL,
    encoder: Encoder,
    tile_spec: TileSpec,
    extra: dict[str, Any] | None = None,
    *,
    ood: OodReference | None = None,
    prior: Sequence[float] | None = None,
) -> Path:
    """Write the weights file: state dict plus what inference needs to rebuild the pipeline.

    ``ood`` (the training slides' :class:`~models.pathology.ood.OodReference`) and ``prior``
    (their phenotype frequencies) are stored when given; a checkpoint without them still loads
    (its slides' OOD status is then "unknown").
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": model.state_dict(),
        "config": model.config.to_dict(),
        "classes": [str(p) for p in PHENOTYPES],
        "encoder": encoder.spec(),
        "tiles": asdict(tile_spec),
        "extra": extra or {},
    }
    if ood is not None:
        ckpt["ood"] = ood.to_state()
    if prior is not None:
        ckpt["class_prior"] = [float(v) for v in prior]
    torch.save(ckpt, path)
    return path


def _data_hash(bags: Sequence[SlideBag], split: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for b in sorted(bags, key=lambda b: b.record.slide_id):
        digest.update(
            f"{b.record.slide_id}|{b.record.phenotype}|{b.record.til_density:.6g}|"
            f"{split[b.record.patient]}\n".encode()
        )
        digest.update(np.ascontiguousarray(b.features).tobytes())
    return digest.hexdigest()


def train_pathology(
    cohort_dir: Path | str,
    out_dir: Path | str,
    *,
    encoder: Encoder | None = None,
    tile_spec: TileSpec | None = None,
    config: TrainConfig | None = None,
    workers: int = 1,
    models_dir: Path | None = None,
    version: str | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
) -> TrainingRun:
    """Train, evaluate on held-out patients, write the report, optionally save the artefact.

    Parameters
    ----------
    cohort_dir
        Folder with a manifest listing WSI slides with ``phenotype`` and ``til_density_per_mm2``.
    out_dir
        Report folder (``report.md``, ``metrics.json``, PNG plots, heat maps, weights file).
    encoder
        Tile encoder; default :class:`~models.pathology.encoders.HandcraftedEncoder`.
    tile_spec
        Reading resolution and tiling; default 0.5 µm/px, 256-px tiles.
    config
        Hyper-parameters and seed.
    workers
        Processes encoding slides.
    models_dir, version
        When both are given, the model is saved with :func:`models.registry.save_artifact`
        as ``pathology-mil``/``version``.
    cache_dir
        Optional feature cache (re-runs skip slide reading).
    progress
        ``progress(stage, done, total)`` callback.
    device
        Where torch encodes (checkpoint encoders) and trains: ``cpu``, ``cuda``, ``cuda:N`` or
        ``auto`` (:func:`models.runtime.device`); the model is evaluated and saved on the CPU.

    Returns
    -------
    TrainingRun
        Model, metrics, split, report files and the saved artefact (if any).
    """

    torch_device(device)  # an absent GPU is refused before any slide is read
    encoder = encoder or HandcraftedEncoder()
    tile_spec = tile_spec or TileSpec()
    config = config or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    records = slides_from_manifest(cohort_dir)
    bags, skipped = extract_bags(
        records,
        encoder,
        tile_spec,
        workers=workers,
        cache_dir=cache_dir,
        progress=progress,
        device=device,
    )
    seconds["features"] = time.perf_counter() - t0
    if len(bags) < 6:
        raise InsufficientDataError(f"only {len(bags)} usable slides in {cohort_dir}; need 6+")
    split = split_patients(
        [b.record.patient for b in bags],
        [b.record.phenotype for b in bags],
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    parts = {k: [b for b in bags if split[b.record.patient] == k] for k in ("train", "val", "test")}

    t0 = time.perf_counter()
    fit = fit_mil(parts["train"], parts["val"], config, progress=progress, device=device)
    seconds["training"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    test = parts["test"] or parts["val"]
    predictions = evaluate.predict_bags(fit.model, test)
    metrics = evaluate.evaluation_metrics(test, predictions)
    metrics["n_slides"] = {k: len(v) for k, v in parts.items()}
    metrics["n_patients"] = {k: len({b.record.patient for b in v}) for k, v in parts.items()}
    metrics["best_epoch"] = fit.best_epoch
    metrics["epochs_run"] = len(fit.history)
    metrics["skipped_slides"] = len(skipped)
    reference = ood_reference(parts["train"], seed=config.seed)
    if reference is not None:
        metrics["ood_reference"] = {
            "slides": len(reference.reference),
            "distance_q95": round(reference.q95, 4),
        }
    weights = save_checkpoint(
        out / WEIGHTS_FILE,
        fit.model,
        encoder,
        tile_spec,
        extra={"train_config": asdict(config)},
        ood=reference,
        prior=class_prior(parts["train"]),
    )
    report_files = evaluate.write_report(
        out,
        test,
        predictions,
        metrics,
        history=fit.history,
        context={
            "encoder": encoder.spec(),
            "tiles": asdict(tile_spec),
            "config": asdict(config),
            "cohort": str(cohort_dir),
            "skipped": skipped,
        },
    )
    seconds["evaluation"] = time.perf_counter() - t0
    metrics["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")

    artifact = None
    if models_dir is not None and version is not None:
        artifact = save_artifact(
            Path(models_dir),
            MODEL_NAME,
            version,
            weights,
            training_data_hash=_data_hash(bags, split),
            metrics={k: v for k, v in metrics.items() if k != "per_slide"},
            card=evaluate.model_card(metrics, encoder.spec(), asdict(tile_spec), asdict(config)),
            extra={"encoder": encoder.spec(), "tiles": asdict(tile_spec), "split": split},
        )
    return TrainingRun(
        model=fit.model,
        weights_path=weights,
        metrics=metrics,
        split=split,
        report_files=report_files,
        fit=fit,
        artifact=artifact,
        skipped=skipped,
        seconds=seconds,
    )
