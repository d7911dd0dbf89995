"""Tokenizers for models built from a config, which have no tokenizer of their own.

A word-level one trained on the training texts (they stay in this process), or a data-free
byte-level one for models shared between organizations (federation), where a vocabulary
learnt from one party's private text must not be needed or shipped.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SPECIALS", "data_free_tokenizer", "trained_tokenizer"]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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
