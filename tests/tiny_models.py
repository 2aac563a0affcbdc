"""Tiny random models in the shape of the paper's teachers, made offline: a Qwen2.5-VL and a Qwen2 text LLM; and
of its open-vocabulary detectors: a Grounding DINO and an OWLv2.

They write nonsense, but they are real checkpoints: every backend loads, tokenizes, batches and decodes them as it
would the 7B models (head size 32, the least vLLM's CPU backend takes). The tokenizer is a byte-level BPE trained
here and carries the Qwen2.5-VL chat template, so prompts render exactly as with the real models.

    python tests/tiny_models.py DIR     # writes DIR/tiny-qwen2.5-vl and DIR/tiny-qwen2 (for the vLLM venv)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

# The Qwen2.5-VL chat template (as the released model ships it), also used for the text model.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
WORDS = (
    "the a of to in is on left right above below red blue green dog cat car person table chair how many "
    "which what where colour size closest image object question options answer skill counting relation "
    "box caption there are two three four one near far large small json true false"
).split()
# Small enough that the vision tower sees a few patches: at most 4 merged tokens of 28x28 pixels.
MAX_PIXELS = 56 * 56


def _corpus(n: int = 3000) -> list[str]:
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(4, 16))
        lines.append(" ".join(words) + rng.choice([".", "?", '", "', '": [', "}, {", " 1 2 3 4 A B C D"]))
    return lines


def build_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )
    tokenizer.save_pretrained(path)
    return tokenizer


def _vocab_size(tokenizer) -> int:
    return (len(tokenizer) + 63) // 64 * 64


def build_tiny_llm(path: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer(path)
    config = Qwen2Config(
        vocab_size=_vocab_size(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path


def build_tiny_vlm(path: Path) -> Path:
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = build_tokenizer(path)
    ids = tokenizer.convert_tokens_to_ids
    image_processor = Qwen2VLImageProcessor(
        min_pixels=28 * 28, max_pixels=MAX_PIXELS, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
    text = {
        "vocab_size": _vocab_size(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
        "bos_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [1],
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(path)
    return path


# Words of the captions the detector tests use: the tiny detector's tokenizer knows them, so queries are real tokens.
DETECTOR_WORDS = (
    "a an the of on in with and . , man woman person people dog cat car bus truck table chair plate pizza cake "
    "bird boat water street road tree sky building kitchen oven sink mirror bathroom room train bike motorcycle "
    "red blue green white black brown yellow large small wooden sign stop"
).split()


def build_tiny_grounding_dino(path: Path) -> Path:
    """A Grounding DINO with a one-block-per-stage Swin, a one-layer BERT and 20 queries; its processor sizes images
    to 128 pixels on the short side (at 64, a tall image's last feature map is one pixel, which its group norms
    refuse) and its word-level BERT tokenizer knows ``DETECTOR_WORDS``."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(DETECTOR_WORDS)]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 192})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    backbone = SwinConfig(
        embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4, out_indices=[2, 3, 4]
    )
    text = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        num_queries=20,
        encoder_layers=1,
        decoder_layers=2,  # one layer trips transformers' tying of the box heads
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        d_model=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=64,
    )
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(path)
    return path


def build_tiny_owlv2(path: Path) -> Path:
    """An OWLv2 with one-layer towers on 64x64 images (16 patches) and a character-level CLIP tokenizer."""
    import torch
    from transformers import (
        CLIPTokenizerFast,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    letters = sorted(set("".join(DETECTOR_WORDS)) - set(".,"))
    vocab = {piece: i for i, piece in enumerate([*letters, *(c + "</w>" for c in letters)])}
    # OWL reads a query whose first token id is 0 as padding: the special tokens come after the letters
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizerFast(vocab=vocab, merges=[], model_max_length=16)
    Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tokenizer
    ).save_pretrained(path)
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "pad_token_id": vocab["<|endoftext|>"],
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 64,
        "patch_size": 16,
    }
    torch.manual_seed(0)
    Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(
        path
    )
    return path


def build_tiny_pos_tagger(path: Path) -> Path:
    """A one-layer BERT token classifier with Universal part-of-speech labels (random: its tags are noise)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(DETECTOR_WORDS)]
    BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(path)
    labels = ["DET", "ADJ", "NOUN", "VERB", "ADP", "PUNCT"]
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    BertForTokenClassification(config).save_pretrained(path)
    return path


def build_all(root: Path) -> Path:
    build_tiny_vlm(root / "tiny-qwen2.5-vl")
    build_tiny_llm(root / "tiny-qwen2")
    return root


if __name__ == "__main__":
    print(build_all(Path(sys.argv[1])))
