"""A stand-in default model for checkouts without the trained one: a small random T5
with a tiny BPE vocabulary, exported as an int8 package. Its output is meaningless; it
shows the whole path (checkpoint -> export -> runtime) working offline.
Usage: python -m edgeseq.export.fallback_model OUT_DIR"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

TEXT = ["the quick brown fox jumps over the lazy dog", "she goes to school every day",
        "edge devices run small encoder decoder models", "fix the grammar of this sentence"]


def build(out: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import T5Config, T5ForConditionalGeneration

    from edgeseq.export import export_checkpoint
    work = Path(tempfile.mkdtemp(prefix="edgeseq-fallback-"))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(TEXT * 4, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    from tokenizers import decoders
    tok.decoder = decoders.Metaspace()
    tok.save(str(work / "tokenizer.json"))
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=tok.get_vocab_size(), d_model=64, d_kv=16, d_ff=128, num_layers=2,
        num_heads=4, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    model.eval().save_pretrained(work / "checkpoint")
    export_checkpoint(work / "checkpoint", out, quant="int8", tokenizer=work / "tokenizer.json")
    return out


if __name__ == "__main__":
    build(Path(sys.argv[1]))
