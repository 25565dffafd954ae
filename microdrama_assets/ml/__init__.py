"""Model-backed stage backends (the ``[ml]`` extra): torch, transformers, diffusers and Coqui TTS.

Nothing here downloads: every backend loads a local model directory the user provides. These modules are imported
only when a backend is selected, so the embedded pipeline never imports torch.
"""

import logging
import sys

import torch

_log = logging.getLogger(__name__)


def _import_torchaudio() -> None:
    """torchaudio's last release (2.11) links CUDA torch 2.11, so next to another torch its compiled extension fails
    to load and ``import torchaudio`` raises; transformers and Coqui import it whenever it is installed (Coqui
    refuses to import without it). Our backends call none of its compiled ops, so torchaudio is then loaded the way
    it supports when no extension is shipped: Python transforms only. Done here, before any backend module imports
    transformers, diffusers or Coqui."""
    try:
        import torchaudio  # noqa: F401
    except ModuleNotFoundError:
        return
    except OSError as failure:
        # The failed import leaves torchaudio's loader helpers in sys.modules; their _load_lib then answers False
        # ("no extension library here") instead of raising, and the package imports without it.
        helpers = sys.modules.get("torchaudio._extension.utils")
        if helpers is None or not hasattr(helpers, "_load_lib"):
            raise ImportError(f"torchaudio is installed but cannot be imported ({failure}); install the torchaudio "
                              f"build that matches torch {torch.__version__}") from failure
        helpers._load_lib = lambda _library: False
        import torchaudio  # noqa: F401, F811

        _log.info("torchaudio's compiled extension does not load with torch %s; using its Python parts only",
                  torch.__version__)


_import_torchaudio()
