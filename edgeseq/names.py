"""Tensor names of the package graphs, declared once for export and runtime."""

# Encoder graph.
ENC_INPUT_IDS = "input_ids"            # int64 [batch, source]
ENC_ATTENTION_MASK = "attention_mask"  # int64 [batch, source], 1 = real token
ENC_INPUT_FEATURES = "input_features"  # float32 [batch, mels, frames] (Whisper)


def cross_key(layer: int) -> str:
    """float32 [batch, heads, source, head_dim]: decoder layer's cross-attention keys."""
    return f"cross_key.{layer}"


def cross_value(layer: int) -> str:
    return f"cross_value.{layer}"


# Decoder graph.
DEC_INPUT_IDS = "input_ids"        # int64 [batch, new]
DEC_PAST_LENGTH = "past_length"    # int64 [] tokens already in the KV cache
DEC_ENCODER_BIAS = "encoder_bias"  # float32 [batch, 1, 1, source], 0 or -1e9 (padding)
DEC_LAYER_RUN = "layer_run"        # bool [layers]: run this layer for the new tokens
DEC_LAYER_FILL = "layer_fill"      # bool [layers]: for a skipped layer, project K/V of the
                                   # hidden state that reaches it (state propagation)
DEC_HIDDEN_IN = "hidden_in"        # float32 [batch, new, d_model]: used instead of the
DEC_USE_HIDDEN = "use_hidden"      # embeddings when use_hidden (bool []) is true, so a
                                   # step can continue from an earlier exit's hidden state
DEC_LOGITS = "logits"              # float32 [batch, new, vocab]
DEC_HIDDEN_OUT = "hidden_out"      # float32 [batch, new, d_model]: after the last layer run,
                                   # before the final norm


def past_key(layer: int) -> str:
    """float32 [batch, heads, past, head_dim]: self-attention keys before this step."""
    return f"past_key.{layer}"


def past_value(layer: int) -> str:
    return f"past_value.{layer}"


def new_key(layer: int) -> str:
    """float32 [batch, heads, new, head_dim]: keys of this step's tokens (zeros if skipped)."""
    return f"new_key.{layer}"


def new_value(layer: int) -> str:
    return f"new_value.{layer}"


ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
WEIGHTS_FILE = "weights.bin"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
