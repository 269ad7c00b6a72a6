"""Every default that backspace uses, each defined here and nowhere else; the converter's own, and the
delete-token names of the file format, are backspace_convert's (its defaults and keys modules)."""
import os

# Sampling, as in llama.cpp's own defaults, so that comparisons with it are like for like.
TEMPERATURE = 0.8
TOP_K = 40
TOP_P = 0.95
MIN_P = 0.05
REPEAT_PENALTY = 1.0  # 1.0 is off
REPEAT_LAST_N = 64  # how many recent tokens the repeat penalty looks at

MAX_TOKENS = 256
CONTEXT_SIZE = 4096  # capped at the model's training context
BATCH_SIZE = 512  # prompt tokens per llama_decode call
# llama.cpp's own default ("auto") uses flash attention on the CPU; llama-cpp-python's bool turns it
# off unless asked, which made our decode slower than llama.cpp's (bench/NOTES.md).
FLASH_ATTENTION = True

# The rewind window: how many of the newest tokens can still be deleted. The engine keeps the raw
# logits of each position in the window, plus the prompt's last and a row to restore into, so memory
# is (window + 2) * n_vocab * 4 bytes (engine.LogitsWindow): 34 * 49,152 * 4 = 6.4 MiB for SmolLM2,
# 34 * 262,144 * 4 = 34 MiB for a Gemma-3-sized vocabulary.
REWIND_WINDOW = 32
# A recurrent or hybrid model keeps a snapshot of its recurrent state after each position in the window,
# so that a delete restores one instead of replaying the reply (engine.state_snapshots): memory is
# (window + 1) * the state's size, and at most this much; positions beyond it are replayed.
STATE_SNAPSHOT_BYTES = 256 << 20
MAX_DELETES = 64  # deletes in one reply; reaching it ends the reply (finish reason "delete_budget")
MAX_DELETES_PER_POSITION = 4  # then the token at that position is kept: the delete is banned after it

# A chat template comes from the model file, so it runs as untrusted code: bounded in time and size.
TEMPLATE_SECONDS = 5.0  # a real template renders a long conversation in milliseconds
TEMPLATE_MAX_CHARS = 4 << 20  # characters in one rendered prompt: more than any context holds as text

CHECK_CONTEXT_SIZE = 256  # convert --check: room for its one short fixed prompt

# backspace synth (data/synth.py's SynthOptions says what each means)
SYNTH_RATE = 0.05
SYNTH_MAX_ERRORS = 3
SYNTH_ERROR_TOKENS = 1
SYNTH_TOP_K = 10
SYNTH_SEED = 0  # the same input gives the same data
TOKENIZER_CONTEXT_SIZE = 256  # synth's random and reply strategies only tokenize: they decode nothing

# backspace eval: replies stepped together in one llama_decode call each step (engine.batch). One: on a
# 2-core CPU a batch has not yet been measured faster than one reply at a time (bench/NOTES.md).
EVAL_PARALLEL = 1

# backspace serve
SERVE_HOST = "127.0.0.1"  # loopback: other machines reach the server only when told to
SERVE_PORT = 8080  # llama-server's port, so that tools set up for it find this one too
SERVE_QUEUE = 64  # requests that may wait for the model; past them, 503 with Retry-After
# Replies generated at once. One: on a laptop's CPU a batch of replies shares the same cores, and one at a time
# keeps the cache of the last reply, so that a chat's next turn decodes only its new message.
SERVE_PARALLEL = 1
SERVE_RETRY_AFTER_S = 1  # what that 503 asks: the queue moves on at every reply
SERVE_MAX_BODY = 1 << 20  # bytes in one request body: far more than any context holds as text
SERVE_UPLOAD_SECONDS = 30.0  # for a request body to arrive whole: a slow link sends SERVE_MAX_BODY in far less

# --rpc: llama.cpp's RPC backend
RPC_HANDSHAKE_SECONDS = 5.0  # for an rpc-server to answer our hello, over any network it is meant for
# While the model loads or a reply runs, an rpc-server silent this long is taken as gone (llama.cpp itself
# would wait forever): far longer than a worker takes to compute one batch of a model worth spreading out.
RPC_TIMEOUT_SECONDS = 300.0


def threads() -> int:
    """llama.cpp decodes fastest on physical cores; SMT siblings rarely help, so halve big counts."""
    count = os.cpu_count() or 1
    return count if count <= 4 else count // 2
