"""llama.cpp's RPC backend: rpc-server workers as devices that a model's layers are offloaded to.

llama-cpp-python has no rpc_servers argument, so this goes through ggml's backend registry, as llama-cli's
--rpc does (common/arg.cpp): the "RPC" registration's ggml_backend_rpc_add_server entry, looked up by name,
gives each server's devices, and the model's llama_model_params.devices lists them (LlamaOnDevices).
"""
import ctypes
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import llama_cpp
import llama_cpp._ggml

from backspace_convert.errors import UserError

from .. import defaults

# The wire format of the handshake, from ggml-rpc.cpp: RPC_CMD_HELLO is fixed at 14 ("must be always 14"),
# its request is RPC_CONN_CAPS_SIZE (24) bytes of capabilities, its reply 4 version bytes and 24 more.
_HELLO = 14
_CAPS_SIZE = 24
_HELLO_REPLY_SIZE = 4 + _CAPS_SIZE


@cache
def _ggml() -> ctypes.CDLL:
    """libggml through a handle of our own, so that the types declared here are ours alone, not those of
    llama-cpp-python's handle, which every user of the library in this process shares."""
    ggml = ctypes.CDLL(llama_cpp._ggml.libggml._name)
    for name, argtypes, restype in (
        ("ggml_backend_reg_by_name", [ctypes.c_char_p], ctypes.c_void_p),
        ("ggml_backend_reg_get_proc_address", [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_void_p),
        ("ggml_backend_reg_dev_count", [ctypes.c_void_p], ctypes.c_size_t),
        ("ggml_backend_reg_dev_get", [ctypes.c_void_p, ctypes.c_size_t], ctypes.c_void_p),
        ("ggml_backend_dev_buffer_type", [ctypes.c_void_p], ctypes.c_void_p),
        ("ggml_backend_buft_alloc_buffer", [ctypes.c_void_p, ctypes.c_size_t], ctypes.c_void_p),
        ("ggml_backend_buffer_free", [ctypes.c_void_p], None),
    ):
        function = getattr(ggml, name)
        function.argtypes, function.restype = argtypes, restype
    return ggml


_ADD_SERVER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)  # ggml_backend_reg_t (*)(const char * endpoint)


def _registration() -> int | None:
    return _ggml().ggml_backend_reg_by_name(b"RPC")


def available() -> bool:
    """Whether this llama.cpp was built with the RPC backend (-DGGML_RPC=ON)."""
    return _registration() is not None


def _host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.partition(":")  # ggml splits at the first colon, and connects over IPv4
    return host, int(port)


def check_server(endpoint: str, timeout: float = defaults.RPC_HANDSHAKE_SECONDS) -> None:
    """Say hello to `endpoint` ourselves, with a time limit, before ggml does without one: ggml aborts the
    process on a refused connection, and waits forever on a peer that never answers (an rpc-server serves
    one client at a time, so a busy one is such a peer). UserError in one line if it does not answer."""
    host, port = _host_port(endpoint)
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(struct.pack("<BQ", _HELLO, _CAPS_SIZE) + bytes(_CAPS_SIZE))
            reply = b""
            while len(reply) < 8 + _HELLO_REPLY_SIZE:
                chunk = connection.recv(8 + _HELLO_REPLY_SIZE - len(reply))
                if not chunk:
                    break
                reply += chunk
    except socket.timeout:
        raise UserError(f"RPC server {endpoint} did not answer within {timeout:g} s"
                        " (an rpc-server serves one client at a time: is another one using it?)") from None
    except OSError as error:
        raise UserError(f"cannot reach RPC server {endpoint}: {error.strerror or error}") from None
    if len(reply) < 8 + _HELLO_REPLY_SIZE or struct.unpack_from("<Q", reply)[0] != _HELLO_REPLY_SIZE:
        raise UserError(f"{endpoint} is not an rpc-server of this llama.cpp version (its handshake failed)")


def devices(endpoints: tuple[str, ...]) -> list[int]:
    """The devices of the rpc-servers at `endpoints`, in order, each server checked first."""
    registration = _registration()
    if registration is None:
        raise UserError("--rpc: this llama.cpp was built without its RPC backend (rebuild with -DGGML_RPC=ON)")
    address = _ggml().ggml_backend_reg_get_proc_address(registration, b"ggml_backend_rpc_add_server")
    if not address:
        raise UserError("--rpc: this llama.cpp's RPC backend has no ggml_backend_rpc_add_server")
    add_server = _ADD_SERVER(address)
    found = []
    for endpoint in endpoints:
        check_server(endpoint)
        server = add_server(endpoint.encode())
        count = _ggml().ggml_backend_reg_dev_count(server) if server else 0
        if count == 0:
            raise UserError(f"RPC server {endpoint} has no devices")
        found += [_ggml().ggml_backend_reg_dev_get(server, index) for index in range(count)]
    return found


@contextmanager
def silence_limited(devices: list[int], endpoints: tuple[str, ...], seconds: float) -> Iterator[None]:
    """From here on, while a model loads onto `devices` and for as long as it uses them, ggml's connection
    to each server of `endpoints` gives up after `seconds` without progress (0: it waits forever, as ggml
    does), and ggml aborts as on a server that died (one line).

    ggml opens a connection to a server whenever it has something to send and none is open, and closes it
    once nothing holds it; during a load, only the model's buffers do, and only once they exist, so the
    connections that carry the load's first messages would be opened, and closed, without the limit. A
    buffer of one byte on each device holds one open from here; the limit is put on it, everything the load
    and the model send goes over it, and the byte is freed after the load, when the model holds it.
    """
    if not devices or not seconds:
        yield
        return
    ggml = _ggml()
    held = [ggml.ggml_backend_buft_alloc_buffer(ggml.ggml_backend_dev_buffer_type(device), 1) for device in devices]
    try:
        _limit_silence(endpoints, seconds)
        yield
    finally:
        for buffer in held:
            if buffer:  # a server out of memory gives none, and the load will say so
                _ggml().ggml_backend_buffer_free(buffer)


def _limit_silence(endpoints: tuple[str, ...], seconds: float) -> None:
    """Give ggml's open connections to `endpoints` a time limit on each send and receive: they are found
    among this process's open sockets by their peer's address."""
    peers = {(socket.gethostbyname(host), port) for host, port in map(_host_port, endpoints)}
    limit = struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))  # struct timeval
    for name in os.listdir("/dev/fd"):
        try:
            connection = socket.socket(fileno=os.dup(int(name)))  # a duplicate: closing it leaves ggml's
        except OSError:  # not a socket, or the directory's own descriptor, gone by now
            continue
        with connection:
            try:
                peer = connection.getpeername() if connection.family == socket.AF_INET else None
            except OSError:
                continue
            if peer in peers:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)


class LlamaOnDevices(llama_cpp.Llama):
    """llama-cpp-python's Llama, offloading to `devices` (none given: llama.cpp's default choice).

    Llama takes no device list: it builds its llama_model_params itself, as its `model_params` attribute,
    and loads the model right after. The list goes into that instance's params as they are set, so nothing
    outside this instance changes. llama.cpp copies the list as it loads, but it is kept with the model.
    """

    def __init__(self, model_path: str, *, devices: list[int], **settings) -> None:
        self._devices = (ctypes.c_void_p * (len(devices) + 1))(*devices, None) if devices else None  # NULL-terminated
        super().__init__(model_path, **settings)

    @property
    def model_params(self) -> llama_cpp.llama_model_params:
        return self._model_params

    @model_params.setter
    def model_params(self, params: llama_cpp.llama_model_params) -> None:
        if self._devices is not None:
            params.devices = ctypes.addressof(self._devices)
        self._model_params = params
