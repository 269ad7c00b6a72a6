"""Loading a GGUF model through llama-cpp-python, and the vocabulary facts the engine needs."""
import ctypes
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import jinja2
import llama_cpp
import llama_cpp._ggml

from .. import defaults
from . import rpc
from backspace_convert.errors import UserError
from backspace_convert.reader import ConvertError
from backspace_convert.validate import validate
GGML_LOG_LEVEL_ERROR = 4  # enum ggml_log_level; the Python bindings do not export it
ABORT_STATUS = 70  # sysexits' EX_SOFTWARE: llama.cpp stopped the process on an internal check


class ModelError(UserError):
    """A model file that cannot be used; the message is one line for the user."""


class _LogSink:
    """Swallows llama.cpp's log lines unless verbose, keeping the last error for our own message."""

    def __init__(self) -> None:
        self.verbose = False
        self.last_error = ""
        # ctypes must keep the callback object alive for as long as llama.cpp may call it.
        self.callback = llama_cpp.llama_log_callback(self._log)
        llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))

    def _log(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", errors="replace")
        if level == GGML_LOG_LEVEL_ERROR and message.strip():
            self.last_error = message.strip()
        if self.verbose:
            print(message, end="", file=sys.stderr, flush=True)


LOGS = _LogSink()


class _AbortReport:
    """ggml's abort callback: a failed GGML_ASSERT ends the process, which Python cannot catch, so say
    llama.cpp's reason in one line and exit with a status instead of dying of SIGABRT in silence."""

    def __init__(self) -> None:
        # On an uncaught C++ exception ggml runs gdb or lldb for a backtrace, unless this is set.
        os.environ.setdefault("GGML_NO_BACKTRACE", "1")
        # llama-cpp-python points fd 2 at /dev/null while it loads a model quietly: keep the real one.
        self.stderr = os.dup(2)
        signature = ctypes.CFUNCTYPE(None, ctypes.c_char_p)  # ggml_abort_callback_t
        self.callback = signature(self._abort)  # kept alive for as long as ggml may call it
        ggml = llama_cpp._ggml.libggml
        ggml.ggml_set_abort_callback.argtypes = [signature]
        ggml.ggml_set_abort_callback.restype = ctypes.c_void_p
        ggml.ggml_set_abort_callback(self.callback)
        # Said after the reason, as the process ends: chat saves its conversation there (an rpc-server
        # that dies mid-reply ends the process from ggml's own thread, so nothing else can keep it).
        self.last_words: Callable[[], str] | None = None

    def _abort(self, message: bytes) -> None:
        reason = message.decode("utf-8", errors="replace").strip().replace("\n", " ")
        reason = re.sub(r"^\S*/(?=[^/\s]+:\d+: )", "", reason)  # the build directory says nothing to a user
        try:
            sys.stdout.flush()
            if self.last_words is not None:
                reason += f"; {self.last_words()}"
        finally:
            fresh_line = "\n" if os.isatty(self.stderr) else ""  # a reply may have been cut off mid-line
            os.write(self.stderr, f"{fresh_line}Error: llama.cpp aborted: {reason}\n".encode())
            os._exit(ABORT_STATUS)


ABORTS = _AbortReport()


def default_gpu_layers() -> int:
    """Offload every layer when llama.cpp was built with a GPU backend (Metal, CUDA), else none."""
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class Model:
    """A loaded model: the high-level Llama object plus the low-level handles the engine drives."""

    def __init__(self, llama: llama_cpp.Llama, path: Path) -> None:
        self.llama = llama
        self.path = path
        self.ctx = llama.ctx
        self.vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self.n_vocab = llama.n_vocab()
        # Past its training context a model degrades: never plan to use more than it has seen.
        self.n_ctx = min(llama.n_ctx(), llama_cpp.llama_model_n_ctx_train(llama.model))
        self.metadata: dict[str, str] = llama.metadata
        self._pieces: dict[int, bytes] = {}
        self._ends: dict[int, bool] = {}  # is_end_of_generation, asked of llama.cpp once per token
        self._piece_buffer = ctypes.create_string_buffer(256)

    def tokenize(self, text: str, *, add_bos: bool, special: bool = True) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def piece(self, token: int) -> bytes:
        """The bytes a token adds to the output; control tokens add none."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._render(token, special=False)
            self._pieces[token] = piece
        return piece

    def token_text(self, token: int) -> str:
        """A token's text as written in the vocabulary, special tokens included: for messages."""
        return self._render(token, special=True).decode("utf-8", errors="replace")

    def _render(self, token: int, special: bool) -> bytes:
        size = llama_cpp.llama_token_to_piece(
            self.vocab, token, self._piece_buffer, len(self._piece_buffer), 0, special
        )
        if size < 0:  # a longer piece than the buffer: grow it and ask again
            self._piece_buffer = ctypes.create_string_buffer(-size)
            return self._render(token, special)
        return self._piece_buffer.raw[:size]

    def is_end_of_generation(self, token: int) -> bool:
        end = self._ends.get(token)
        if end is None:
            end = self._ends[token] = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
        return end

    def find_token(self, text: str) -> int | None:
        """The id of the single token whose text is exactly `text`, if the vocabulary has one."""
        ids = self.tokenize(text, add_bos=False, special=True)
        if len(ids) == 1 and self.token_text(ids[0]) == text:
            return ids[0]
        return None

    def parse_token(self, spec: str) -> int | None:
        """A token given as an id or as its exact text."""
        digits = spec.strip()
        if digits.isascii() and digits.isdigit():  # isdigit() alone takes "²", which int() refuses
            return int(digits) if len(digits) <= len(str(self.n_vocab)) and int(digits) < self.n_vocab else None
        return self.find_token(spec)


def load_model(
    path: str | Path,
    *,
    n_ctx: int = defaults.CONTEXT_SIZE,
    n_threads: int | None = None,
    n_gpu_layers: int | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    verbose: bool = False,
    rpc_servers: tuple[str, ...] = (),
    rpc_timeout: float = defaults.RPC_TIMEOUT_SECONDS,
) -> Model:
    """Load `path`; with `rpc_servers` (HOST:PORT), layers are offloaded to those rpc-servers' devices,
    all of them unless n_gpu_layers says otherwise, and a server silent for `rpc_timeout` seconds
    as the model loads or replies ends the process in one line (0: llama.cpp waits forever)."""
    path = Path(path)
    try:  # what llama.cpp would abort on, or fail on with a wall of log lines, refused with one clear line
        validate(path, missing="model file not found")
    except ConvertError as error:
        raise ModelError(str(error)) from None
    LOGS.verbose = verbose
    LOGS.last_error = ""
    threads = n_threads or defaults.threads()
    devices = rpc.devices(rpc_servers)
    if n_gpu_layers is None:
        n_gpu_layers = -1 if devices else default_gpu_layers()
    try:
        with rpc.model_devices(devices), rpc.silence_limited(devices, rpc_servers, rpc_timeout):
            llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=batch_size,
                n_ubatch=batch_size,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                flash_attn=defaults.FLASH_ATTENTION,
                verbose=verbose,
            )
    except jinja2.TemplateError as error:  # llama-cpp-python compiles the model's chat template as it loads
        reason = " ".join(str(error).split())
        raise ModelError(f"the model's chat template does not parse ({reason}): {path}") from None
    except (ValueError, RuntimeError) as error:
        reason = LOGS.last_error or str(error)
        raise ModelError(f"llama.cpp could not load {path}: {reason}") from None
    return Model(llama, path)
