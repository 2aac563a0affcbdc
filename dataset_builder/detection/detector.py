"""A zero-shot detector through ``transformers``: ``AutoModelForZeroShotObjectDetection`` and its ``AutoProcessor``.

Two families, told apart by the checkpoint's ``model_type``:

- Grounding DINO (``grounding-dino``, ``mm-grounding-dino``): one text prompt per pass, the queries joined as the
  model was trained ("red car. wooden table."), at most ``max_text_len`` tokens, so a caption with many phrases takes
  several passes. A box's score for a query is the highest of its token scores over that query's tokens.
- OWL-ViT and OWLv2 (``owlvit``, ``owlv2``): every query is its own class, ``OWL_QUERIES_PER_PASS`` at a time.

Either way each box the model proposes is matched to the query it scores best on and kept when that score reaches
``boxes.SCORE_FLOOR``. Items (an image and one pass's queries) run ``batch_size`` at a time, on the GPU when there is
one, in ``torch.inference_mode``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

from datasets.utils import logging

from ..errors import BuildError
from ..generation.backend import ModelSpec
from .boxes import MAX_BOXES_PER_QUERY, SCORE_FLOOR, RawDetection
from .phrases import Phrase, phrase, tagged_chunks, unique

logger = logging.get_logger(__name__)

GROUNDING_DINO = ("grounding-dino", "mm-grounding-dino")
OWL = ("owlv2", "owlvit")
OWL_QUERIES_PER_PASS = 64


def parse_model(spec: str, flag: str) -> ModelSpec:
    """``transformers:HUB_ID_OR_PATH`` as a ``ModelSpec``; ``ValueError`` naming ``flag`` for anything else."""
    if not spec.startswith("transformers:"):
        raise ValueError(
            f"{flag} {spec!r}: lgt detect runs its models through transformers, as transformers:HUB_ID_OR_PATH "
            "(e.g. transformers:IDEA-Research/grounding-dino-base, transformers:google/owlv2-base-patch16-ensemble)"
        )
    return ModelSpec.parse(spec)


def revision_of(spec: ModelSpec) -> str:
    """The detector's version (a local folder's fingerprint or the Hub commit), or a one-line ``BuildError``."""
    try:
        return spec.revision()
    except Exception as error:  # the Hub unreachable, offline mode, a repo that does not exist
        raise BuildError(
            f"cannot look up detector {spec.model} ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "download it first (hf download MODEL) or pass a local folder"
        ) from None


class Detector:
    """A detector's processor, and its model once ``load`` is called: ``passes`` plans the work, ``detect`` runs it.

    Planning needs only the processor (Grounding DINO counts prompt tokens), so a dry run, or a run whose every
    detection is cached, never loads the weights.
    """

    def __init__(
        self, spec: ModelSpec, revision: str, *, device: str = "auto", batch_size: int = 8, dtype: str = "float32"
    ):
        import torch
        from transformers import AutoConfig, AutoProcessor

        self.torch, self.spec, self.revision, self.batch_size = torch, spec, revision, batch_size
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.dtype = getattr(torch, dtype)
        self.pinned = {} if spec.is_local else {"revision": revision}
        self.model = None
        with _loading(spec):
            config = AutoConfig.from_pretrained(spec.model, **self.pinned)
            if config.model_type not in GROUNDING_DINO + OWL:
                raise ValueError(
                    f"{spec.model} is a {config.model_type!r} model; lgt detect runs {', '.join(GROUNDING_DINO + OWL)}"
                )
            self.family = "grounding-dino" if config.model_type in GROUNDING_DINO else config.model_type
            self.max_text_len = getattr(config, "max_text_len", 256)
            self.processor = AutoProcessor.from_pretrained(spec.model, **self.pinned)

    def load(self) -> None:
        """Load the weights onto the device (once)."""
        from transformers import AutoModelForZeroShotObjectDetection

        if self.model is None:
            with _loading(self.spec):
                model = AutoModelForZeroShotObjectDetection.from_pretrained(
                    self.spec.model, dtype=self.dtype, **self.pinned
                )
            self.model = model.to(self.device).eval()
            logger.info(f"detector {self.spec.name} loaded on {self.device} in {self.dtype}")

    # ---- planning: which queries go together in one pass ----

    def _prompt(self, queries: Sequence[str]) -> str:
        return ". ".join(queries) + "."

    def _tokens(self, queries: Sequence[str]) -> int:
        return len(self.processor.tokenizer(self._prompt(queries))["input_ids"])

    def passes(self, queries: Sequence[str]) -> list[list[int]]:
        """The queries' indices grouped into passes, in order: as many per pass as the model takes."""
        groups: list[list[int]] = []
        for index, query in enumerate(queries):
            current = groups[-1] if groups else None
            if current is not None and self._fits([*(queries[i] for i in current), query]):
                current.append(index)
            else:
                groups.append([index])
        return groups

    def _fits(self, queries: list[str]) -> bool:
        if self.family == "grounding-dino":
            return self._tokens(queries) <= self.max_text_len
        return len(queries) <= OWL_QUERIES_PER_PASS

    # ---- running ----

    def detect(self, items: Sequence[tuple[object, Sequence[str]]]) -> list[list[RawDetection]]:
        """Raw detections of each ``(PIL image, queries)`` item, query indices into that item's queries."""
        found = []
        for start in range(0, len(items), self.batch_size):
            found += self._batch(items[start : start + self.batch_size])
        return found

    def _batch(self, items: Sequence[tuple[object, Sequence[str]]]) -> list[list[RawDetection]]:
        torch = self.torch
        images = [image for image, _ in items]
        with torch.inference_mode():
            if self.family == "grounding-dino":
                prompts = [self._prompt(queries) for _, queries in items]
                inputs = self.processor(images=images, text=prompts, padding=True, return_tensors="pt")
                outputs = self.model(**inputs.to(self.device).to(self.dtype))
                scores = self._grounding_scores(outputs.logits.float().sigmoid(), prompts, [q for _, q in items])
                frames = [(image.width, image.height) for image in images]
            else:
                texts = [list(queries) for _, queries in items]
                inputs = self.processor(images=images, text=texts, truncation=True, return_tensors="pt")
                outputs = self.model(**inputs.to(self.device).to(self.dtype))
                logits = outputs.logits.float().sigmoid()
                scores = [logits[i, :, : len(q)] for i, (_, q) in enumerate(items)]
                # OWLv2 pads each image to a square at the bottom and right; OWL-ViT stretches it to one
                side = [max(image.width, image.height) for image in images]
                frames = (
                    [(s, s) for s in side]
                    if self.family == "owlv2"
                    else [(image.width, image.height) for image in images]
                )
            boxes = outputs.pred_boxes.float().cpu()
        return [
            _raw(score.float().cpu(), boxes[i], frames[i], (image.width, image.height))
            for i, (score, image) in enumerate(zip(scores, images, strict=True))
        ]

    def _grounding_scores(self, probs, prompts: list[str], queries: list[Sequence[str]]):
        """Per item, ``(boxes, queries)``: each query's score, the highest over the tokens of its words."""
        torch = self.torch
        encoded = self.processor.tokenizer(prompts, padding=True, return_offsets_mapping=True)
        scores = []
        for i, item_queries in enumerate(queries):
            spans, position = [], 0
            for query in item_queries:
                spans.append((position, position + len(query)))
                position += len(query) + 2  # ". "
            offsets = encoded["offset_mapping"][i]
            columns = []
            for begin, end in spans:
                tokens = [t for t, (a, b) in enumerate(offsets) if b > a and a >= begin and b <= end]
                columns.append(probs[i, :, tokens].max(dim=-1).values)
            scores.append(torch.stack(columns, dim=-1))
        return scores


@contextmanager
def _loading(spec: ModelSpec):
    """Files missing, no network, an optional dependency absent: one line naming the model, not a traceback."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the terminal shows datasets' bars only
    try:
        yield
    except (OSError, ImportError) as error:
        raise BuildError(f"cannot load detector {spec.model}: {str(error).splitlines()[0]}") from None


def _raw(scores, boxes, frame: tuple[int, int], size: tuple[int, int]) -> list[RawDetection]:
    """The boxes (centre x, centre y, width, height relative to ``frame``) that score at least the floor on their
    best query, clipped to the image ``size``, the best ``MAX_BOXES_PER_QUERY`` of each query."""
    best, query = scores.max(dim=-1)
    per_query: dict[int, list[RawDetection]] = {}
    for n in (best >= SCORE_FLOOR).nonzero().flatten().tolist():
        cx, cy, w, h = boxes[n].tolist()
        width, height = float(size[0]), float(size[1])
        x0 = min(max((cx - w / 2) * frame[0], 0.0), width)
        y0 = min(max((cy - h / 2) * frame[1], 0.0), height)
        x1 = min(max((cx + w / 2) * frame[0], 0.0), width)
        y1 = min(max((cy + h / 2) * frame[1], 0.0), height)
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            box = (round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2))
            per_query.setdefault(int(query[n]), []).append(RawDetection(int(query[n]), round(float(best[n]), 4), box))
    return sorted(
        (d for found in per_query.values() for d in sorted(found, key=lambda d: -d.score)[:MAX_BOXES_PER_QUERY]),
        key=lambda d: (d.query, -d.score, d.box),
    )


class Tagger:
    """``--phrases transformers:MODEL``: a part-of-speech tagger (token classification) whose tags are chunked into
    noun phrases (``phrases.tagged_chunks``) instead of the rules."""

    def __init__(self, spec: ModelSpec, revision: str, *, device: str = "auto", batch_size: int = 32):
        import torch
        from transformers import pipeline

        pinned = {} if spec.is_local else {"revision": revision}
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.batch_size = batch_size
        with _loading(spec):
            self.pipe = pipeline(
                "token-classification", model=spec.model, aggregation_strategy="first", device=device, **pinned
            )

    def __call__(self, captions: list[str]) -> list[list[Phrase]]:
        tagged = self.pipe(captions, batch_size=self.batch_size) if captions else []
        return [
            unique(
                phrase(chunk)
                for chunk in tagged_chunks([(text[g["start"] : g["end"]], g["entity_group"]) for g in groups])
            )
            for text, groups in zip(captions, tagged, strict=True)
        ]
