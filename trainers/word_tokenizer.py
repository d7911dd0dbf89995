"""Tokenizers for models built from a config, which have no tokenizer of their own.

A word-level one trained on the training texts (they stay in this process); for models shared
between organizations (federation), where a vocabulary learnt from one party's private text must
not be needed or shipped, a public one: WordPiece over the uncased BERT vocabulary that ships in
data/ (the same file as bert-base-uncased's and MiniLM's, Apache-2.0), so whole English words are
tokens and a small model learns in a few steps; and a byte-level one that needs no file at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["SPECIALS", "data_free_tokenizer", "public_vocabulary_tokenizer", "trained_tokenizer"]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
#: The public WordPiece vocabulary (30,522 tokens, uncased).
PUBLIC_VOCABULARY = Path(__file__).parent / "data" / "wordpiece-uncased-vocab.txt"


def _with_specials(tok: Any) -> Any:
    """Wraps a `tokenizers` tokenizer for transformers, adding [CLS] ... [SEP] around inputs."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    # [CLS]/[SEP] double as BOS/EOS, so a causal LM built from a config has an end of text.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
    )


def trained_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A lower-cased word-level tokenizer with at most vocab_size tokens, learnt from texts."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        texts, trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS)
    )
    return _with_specials(tok)


def data_free_tokenizer() -> Any:
    """A byte-level tokenizer that needs no data: every byte is a token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(SPECIALS + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return _with_specials(tok)


def public_vocabulary_tokenizer() -> Any:
    """An uncased WordPiece tokenizer over the public vocabulary in data/: learnt from no one's data."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece.from_file(str(PUBLIC_VOCABULARY), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return _with_specials(tok)
