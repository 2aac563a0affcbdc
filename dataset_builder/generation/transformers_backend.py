"""A local model through ``transformers``: batched ``generate``, CPU-capable, images through the model's processor.

Requests are grouped by their decoding settings (``generate`` takes one set per call) and batched by prompt length
so little is padding. Within a batch the seed is the group's, set before the call: a batch is as reproducible as
``torch`` makes it, and the cache keeps what was written either way. JSON schemas cannot be enforced here; the
callers parse strictly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import groupby

from datasets.utils import logging

from ..errors import GenerationError
from .backend import Setting
from .processor import load_processor
from .request import Request, Response, chat_messages

logger = logging.get_logger(__name__)


def _decoding(request: Request) -> tuple:
    """What must be equal for two requests to share one ``generate`` call."""
    return request.sampling, request.banned_words


def _stop_strings_criterion():
    """A stopping criterion for stop strings in the *output* only, as vLLM and OpenAI servers do.

    (``generate``'s own ``stop_strings`` also match across the end of the prompt, so a prompt ending in a newline
    stops a ``"\\n\\n"`` stop string after one generated newline.)
    """
    import torch
    from transformers import StoppingCriteria

    class StopStrings(StoppingCriteria):
        def __init__(self, tokenizer, prompt_length: int, stops: tuple[str, ...]):
            self.tokenizer, self.prompt_length, self.stops = tokenizer, prompt_length, stops

        def __call__(self, input_ids, scores, **kwargs):
            texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
            return torch.tensor([any(stop in text for stop in self.stops) for text in texts], device=input_ids.device)

    return StopStrings


class TransformersBackend:
    SETTINGS = {
        "batch_size": Setting("whole", at_least=1),  # requests per generate call
        "max_pixels": Setting("whole", at_least=1),  # the processor's image cap (part of the cache key)
        "dtype": Setting("text"),  # torch dtype of the weights: auto, bfloat16, float32 ...
    }
    EXTRA = "models"
    supports_schema = False
    supports_banned_words = True

    @classmethod
    def from_spec(cls, spec, **options) -> TransformersBackend:
        """The backend for a ``ModelSpec`` (``transformers:PATH_OR_HUB_ID``)."""
        return cls(spec.model, **options)

    def __init__(self, path: str, *, batch_size: int = 8, max_pixels: int | None = None, dtype: str = "auto"):
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoTokenizer,
        )

        self.torch = torch
        self._stop_strings = _stop_strings_criterion()
        self.batch_size = batch_size
        config = AutoConfig.from_pretrained(path)
        self.multimodal = getattr(config, "vision_config", None) is not None
        if self.multimodal:
            self.processor = load_processor(path, max_pixels)
            self.tokenizer = self.processor.tokenizer
            self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        else:
            self.processor = self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.eval()
        self.path = path

    def _prompt(self, request: Request) -> str:
        if request.images and not self.multimodal:
            raise GenerationError(
                f"the transformers backend, model {self.path}: a text model, it cannot read the images this stage "
                "sends: name a vision-language model",
                2,
            )
        return self.processor.apply_chat_template(
            chat_messages(request, image=lambda part: {"type": "image"}),
            tokenize=False,
            add_generation_prompt=not request.prefill,
            continue_final_message=bool(request.prefill),
        )

    def generate(self, requests: Sequence[Request]) -> Iterator[list[tuple[int, Response]]]:
        prompts = [self._prompt(request) for request in requests]
        lengths = [len(prompt) for prompt in prompts]
        order = sorted(range(len(requests)), key=lambda i: (repr(_decoding(requests[i])), lengths[i]))
        for _, group in groupby(order, key=lambda i: repr(_decoding(requests[i]))):
            group = list(group)
            for start in range(0, len(group), self.batch_size):
                batch = group[start : start + self.batch_size]
                yield self._generate_batch([requests[i] for i in batch], [prompts[i] for i in batch], batch)

    def _generate_batch(
        self, requests: list[Request], prompts: list[str], indices: list[int]
    ) -> list[tuple[int, Response]]:
        torch = self.torch
        images = [image.to_pil() for request in requests for image in request.images]
        # The chat template already wrote any special tokens the model needs: add none twice.
        inputs = self.processor(
            text=prompts, images=images or None, padding=True, add_special_tokens=False, return_tensors="pt"
        )
        sampling = requests[0].sampling
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        prompt_length = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            sequences = self.model.generate(**inputs, **self._generate_kwargs(requests[0], prompt_length))
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        answers = []
        for row, index in enumerate(indices):
            outputs = sequences[row * sampling.n : (row + 1) * sampling.n, prompt_length:]
            texts, reasons, output_tokens = [], [], 0
            for tokens in outputs.tolist():
                text, reason, used = self._decode(tokens, sampling.stop)
                texts.append(text)
                reasons.append(reason)
                output_tokens += used
            answers.append((index, Response(tuple(texts), tuple(reasons), int(prompt_tokens[row]), output_tokens)))
        return answers

    def _generate_kwargs(self, request: Request, prompt_length: int) -> dict:
        sampling = request.sampling
        kwargs = {
            "max_new_tokens": sampling.max_tokens,
            "num_return_sequences": sampling.n,
            "do_sample": sampling.temperature > 0,
            "repetition_penalty": sampling.repetition_penalty,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or None)
        if sampling.stop:
            kwargs["stopping_criteria"] = [self._stop_strings(self.tokenizer, prompt_length, sampling.stop)]
        if request.banned_words:
            # A word is banned as it starts a text and as it follows a space: byte-level BPE spells them apart.
            spellings = {spelling for word in request.banned_words for spelling in (word, " " + word)}
            kwargs["bad_words_ids"] = [self.tokenizer.encode(s, add_special_tokens=False) for s in sorted(spellings)]
        return kwargs

    def _decode(self, tokens: list[int], stop: tuple[str, ...]) -> tuple[str, str, int]:
        """Text, finish reason and token count of one output; the stop string, as in vLLM, is not part of it."""
        ends = {self.tokenizer.pad_token_id, *self._eos_ids}
        end = next((i for i, token in enumerate(tokens) if token in ends), None)
        used = len(tokens) if end is None else end + 1
        text = self.tokenizer.decode(tokens[:used], skip_special_tokens=True)
        cut = min((text.find(s) for s in stop if s in text), default=-1)
        if cut >= 0:
            return text[:cut], "stop", used
        return text, "length" if end is None else "stop", used

    @property
    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos]) - {None}
