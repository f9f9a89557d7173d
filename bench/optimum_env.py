"""Build the side environment that runs the Optimum peer: ``python -m bench.optimum_env``.

optimum-onnx 0.1.0 (the newest) needs transformers < 4.58 and does not import under the
transformers 5 of the main venv. This makes bench/.cache/optimum-venv holding only
transformers 4.57, its hub / tokenizers versions and Optimum, and points it at the main
venv's site-packages (a .pth file) for torch, onnx, onnxruntime and numpy, so torch is
neither downloaded again nor replaced. bench/peers.py runs the "ort-*" engines with its
interpreter when it exists.
"""

from __future__ import annotations

import site
import subprocess
import sys
import venv

from bench.peers import OPTIMUM_PYTHON

PACKAGES = [
    "transformers>=4.57,<4.58", "huggingface_hub>=0.34,<1.0", "tokenizers>=0.22,<0.23",
    "optimum==2.1.0", "optimum-onnx==0.1.0",
    "requests", "urllib3", "idna", "certifi", "charset-normalizer",
]
CHECK = ("import torch, optimum.onnxruntime, transformers; "
         "print(transformers.__version__, torch.__version__)")


def main() -> int:
    env_dir = OPTIMUM_PYTHON.parent.parent
    if not OPTIMUM_PYTHON.exists():
        venv.EnvBuilder(with_pip=False).create(env_dir)
    # --no-deps: everything else comes from the main venv, and pip must never touch torch.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(OPTIMUM_PYTHON), "install",
                    "--quiet", "--no-deps", *PACKAGES], check=True)
    where = "import site; print(site.getsitepackages()[0])"
    side = subprocess.run([str(OPTIMUM_PYTHON), "-c", where],
                          check=True, capture_output=True, text=True).stdout.strip()
    with open(f"{side}/_edgeseq_main_venv.pth", "w") as f:
        f.write(site.getsitepackages()[0] + "\n")
    subprocess.run([str(OPTIMUM_PYTHON), "-c", CHECK], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
