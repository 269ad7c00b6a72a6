"""What llama.cpp was built with: its backends, whether it can offload to a GPU or to rpc-servers (--rpc),
and the thread default."""
import llama_cpp

from .. import __version__
from .. import defaults
from . import rpc


def backends(report: str) -> list[str]:
    """The backend names in llama_print_system_info()'s report: 'CUDA : ARCHS = 890 | CPU : SSE3 = 1 | ...'."""
    return [field.split(" : ")[0].strip() for field in report.split("|") if " : " in field]


def system_info() -> dict[str, str]:
    report = llama_cpp.llama_print_system_info().decode().strip()
    names = backends(report)
    return {
        "backspace": __version__,
        "llama-cpp-python": llama_cpp.__version__,
        "backends": ", ".join(names),
        "gpu offload": "yes" if llama_cpp.llama_supports_gpu_offload() else "no",
        "rpc (--rpc)": "yes" if rpc.available() else "no (llama.cpp built without -DGGML_RPC=ON)",
        "threads (default)": str(defaults.threads()),
        "system info": report,
    }
