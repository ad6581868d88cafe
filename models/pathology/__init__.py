"""Pathology science: whole-slide images to an immune signature with attention MIL.

One room per concept: :mod:`.slide` (reading, tissue mask, tiling), :mod:`.stain` (the H&E
check and Macenko normalisation), :mod:`.ood` (distance from the training slides),
:mod:`.encoders` (the :class:`Encoder` interface, a weight-free handcrafted encoder and a local
checkpoint encoder), :mod:`.mil` (gated attention MIL), :mod:`.train` (patient-level training),
:mod:`.evaluate` (metrics, plots, report), :mod:`.heatmap`, and :mod:`.inference` with
:func:`analyse_slide`, the one call a worker makes.
"""

from models.pathology.bag import SlideBag, SlideRecord
from models.pathology.encoders import (
    ENCODERS,
    CheckpointEncoder,
    Encoder,
    HandcraftedEncoder,
    encoder_from_spec,
    lymphocyte_density,
)
from models.pathology.evaluate import (
    Predictions,
    attention_enrichment,
    balanced_accuracy,
    evaluation_metrics,
    predict_bags,
    write_report,
)
from models.pathology.heatmap import attention_grid, heatmap_png, overlay
from models.pathology.inference import (
    LoadedPipeline,
    PathologyResult,
    Provenance,
    StainPolicy,
    analyse_slide,
    clear_cache,
    load_pipeline,
)
from models.pathology.mil import PHENOTYPES, GatedAttentionMIL, MILConfig, MILOutput
from models.pathology.ood import OodReference, OodScore, OodStatus, bag_embedding
from models.pathology.slide import (
    DEFAULT_MPP,
    TileSet,
    TileSpec,
    glass_colour,
    magnification_to_mpp,
    open_slide,
    read_tiles,
    tissue_mask,
)
from models.pathology.stain import (
    MacenkoNormalizer,
    StainCheck,
    StainOutcome,
    check_stain,
    estimate_stain_vectors,
)
from models.pathology.train import (
    MODEL_NAME,
    TrainConfig,
    TrainingRun,
    extract_bags,
    fit_mil,
    slides_from_manifest,
    split_patients,
    train_pathology,
)

__all__ = [
    "DEFAULT_MPP",
    "ENCODERS",
    "MODEL_NAME",
    "PHENOTYPES",
    "CheckpointEncoder",
    "Encoder",
    "GatedAttentionMIL",
    "HandcraftedEncoder",
    "LoadedPipeline",
    "MILConfig",
    "MILOutput",
    "MacenkoNormalizer",
    "OodReference",
    "OodScore",
    "OodStatus",
    "PathologyResult",
    "Predictions",
    "Provenance",
    "SlideBag",
    "SlideRecord",
    "StainCheck",
    "StainOutcome",
    "StainPolicy",
    "TileSet",
    "TileSpec",
    "TrainConfig",
    "TrainingRun",
    "analyse_slide",
    "attention_enrichment",
    "attention_grid",
    "bag_embedding",
    "balanced_accuracy",
    "check_stain",
    "clear_cache",
    "encoder_from_spec",
    "estimate_stain_vectors",
    "evaluation_metrics",
    "extract_bags",
    "fit_mil",
    "glass_colour",
    "heatmap_png",
    "load_pipeline",
    "lymphocyte_density",
    "magnification_to_mpp",
    "open_slide",
    "overlay",
    "predict_bags",
    "read_tiles",
    "slides_from_manifest",
    "split_patients",
    "tissue_mask",
    "train_pathology",
    "write_report",
]
