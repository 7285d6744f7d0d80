"""Tiny random-weight stand-ins for chinese-roberta-wwm-ext-large and chinese-hubert-base.

Built from transformers config classes and saved with save_pretrained, so the real loading code reads them.
The BERT is 1024 wide (what the GPT's bert_proj takes) and the HuBERT 768 wide (what SoVITS takes), each
with one or two thin layers so they stay fast on CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tiny_bert(directory: Path, characters: str, *, hidden: int = 1024, layers: int = 2) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(characters) - {" "})
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + chars) + "\n", encoding="utf-8")
    transformers.BertTokenizer(str(vocab)).save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(SPECIALS) + len(chars), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=512,
    )
    transformers.BertForMaskedLM(config).save_pretrained(directory)
    return directory


def write_tiny_hubert(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = transformers.HubertConfig(
        hidden_size=768, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
        conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=16,
    )
    transformers.HubertModel(config).save_pretrained(directory)
    return directory
