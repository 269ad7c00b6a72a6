"""llama.cpp's process-wide hooks: its log lines (quiet unless verbose, the last error kept for our message) and
ggml's abort (one line and an exit status). install() puts them in place once, before the first model loads."""
import ctypes
import os
import re
import sys
from collections.abc import Callable
from functools import cache

import llama_cpp
import llama_cpp._ggml

GGML_LOG_LEVEL_ERROR = 4  # enum ggml_log_level; the Python bindings do not export it
ABORT_STATUS = 70  # sysexits' EX_SOFTWARE: llama.cpp stopped the process on an internal check


class LogSink:
    """Swallows llama.cpp's log lines unless verbose, keeping the last error for our own message."""

    def __init__(self) -> None:
        self.verbose = False
        self.last_error = ""
        # ctypes must keep the callback object alive for as long as llama.cpp may call it.
        self.callback = llama_cpp.llama_log_callback(self._log)

    def install(self) -> None:
        llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))

    def _log(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", errors="replace")
        if level == GGML_LOG_LEVEL_ERROR and message.strip():
            self.last_error = message.strip()
        if self.verbose:
            print(message, end="", file=sys.stderr, flush=True)


class AbortReport:
    """ggml's abort callback: a failed GGML_ASSERT ends the process, which Python cannot catch, so say
    llama.cpp's reason in one line and exit with a status instead of dying of SIGABRT in silence."""

    _SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_char_p)  # ggml_abort_callback_t

    def __init__(self) -> None:
        self.callback = self._SIGNATURE(self._abort)  # kept alive for as long as ggml may call it
        self.stderr = 2
        # Said after the reason, as the process ends: chat saves its conversation there (an rpc-server
        # that dies mid-reply ends the process from ggml's own thread, so nothing else can keep it).
        self.last_words: Callable[[], str] | None = None

    def install(self) -> None:
        # On an uncaught C++ exception ggml runs gdb or lldb for a backtrace, unless this is set.
        os.environ.setdefault("GGML_NO_BACKTRACE", "1")
        # llama-cpp-python points fd 2 at /dev/null while it loads a model quietly: keep the real one.
        self.stderr = os.dup(2)
        ggml = ctypes.CDLL(llama_cpp._ggml.libggml._name)  # a handle of our own: its types stay ours
        ggml.ggml_set_abort_callback.argtypes = [self._SIGNATURE]
        ggml.ggml_set_abort_callback.restype = ctypes.c_void_p
        ggml.ggml_set_abort_callback(self.callback)

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


LOGS = LogSink()
ABORTS = AbortReport()


@cache
def install() -> None:
    """Point llama.cpp's log at LOGS and ggml's abort at ABORTS; only the first call in a process does it."""
    LOGS.install()
    ABORTS.install()
