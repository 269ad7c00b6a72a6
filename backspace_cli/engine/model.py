"""Loading a GGUF model through llama-cpp-python, and the vocabulary facts the engine needs."""
import ctypes
from pathlib import Path

import jinja2
import llama_cpp

from .. import defaults
from . import rpc
from .llama_hooks import LOGS, install
from backspace_convert.errors import UserError
from backspace_convert.reader import ConvertError
from backspace_convert.validate import validate


class ModelError(UserError):
    """A model file that cannot be used; the message is one line for the user."""


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
    install()  # before llama.cpp logs, or ggml may abort, for the first time
    LOGS.verbose = verbose
    LOGS.last_error = ""
    threads = n_threads or defaults.threads()
    devices = rpc.devices(rpc_servers)
    if n_gpu_layers is None:
        n_gpu_layers = -1 if devices else default_gpu_layers()
    try:
        with rpc.silence_limited(devices, rpc_servers, rpc_timeout):
            llama = rpc.LlamaOnDevices(
                str(path),
                devices=devices,
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
