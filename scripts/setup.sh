#!/usr/bin/env bash
# Idempotent environment setup: .venv with the tested torch / fbgemm-gpu / torchrec trio,
# the project (editable) and its test tools; Debian's tcmalloc and chromium (the report's
# browser test) where apt is usable.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.recsys-setup-v1

TORCH_VERSION=2.13.0
FBGEMM_VERSION=1.8.0
TORCHREC_VERSION=1.8.0

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/setup.sh ] \
   && [ -z "$(find kernels -newer "$STAMP" \( -name '*.cpp' -o -name '*.h' -o -name '*.py' -o -name '*.toml' \) -print -quit)" ]; then
  exit 0
fi

APT_PACKAGES=()
if [ ! -e /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 ] && [ ! -e /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4 ]; then
  APT_PACKAGES+=(libtcmalloc-minimal4)
fi
command -v chromium >/dev/null 2>&1 || APT_PACKAGES+=(chromium)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${APT_PACKAGES[*]} (apt)"
    apt-get update -qq >/dev/null || echo "setup: apt-get update failed"
    for pkg in "${APT_PACKAGES[@]}"; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null \
        || echo "setup: apt could not install $pkg (tcmalloc: training uses glibc malloc, slower; chromium: the report's browser test is skipped)"
    done
  else
    echo "setup: apt not usable; missing ${APT_PACKAGES[*]} (tcmalloc: training uses glibc malloc; chromium: the browser test is skipped)"
  fi
fi

[ -x $VENV/bin/python ] || $PY -m venv $VENV
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && [ -z "${RECSYS_CPU_ONLY:-}" ]; then
  FBGEMM_PKG="fbgemm-gpu==$FBGEMM_VERSION"
else
  FBGEMM_PKG="fbgemm-gpu-cpu==$FBGEMM_VERSION"
fi
$PIP install "torch==$TORCH_VERSION" "$FBGEMM_PKG"
# torchrec's own requirement on fbgemm-gpu would pull the CUDA build: install it bare,
# then the rest of what it needs by hand.
$PIP install --no-deps "torchrec==$TORCHREC_VERSION"
$PIP install "torchmetrics==1.0.3" tensordict pyre-extensions tqdm
$PIP install -e ".[test]"
# recsys's own C++ ops (kernels/), built against the torch just installed; without a C++
# toolchain the package installs without them and recsys runs its pure-torch path.
$PIP install --no-build-isolation -e kernels/
$VENV/bin/python -c "import recsys_kernels as k; print('setup: recsys kernels', 'built' if k.available() else 'NOT built: ' + k.unavailable_reason())"
# The C++ server of TorchScript artifacts (recsys/serving/cpp), against the wheel's libtorch;
# its test builds it itself when this could not.
if command -v cmake >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1; then
  PREFIX=$($VENV/bin/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  (cmake -S recsys/serving/cpp -B $VENV/recsys_serve_build -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release \
     && cmake --build $VENV/recsys_serve_build) >/dev/null \
    && echo "setup: recsys_serve built" || echo "setup: recsys_serve NOT built (its test will try again)"
else
  echo "setup: no cmake or C++ compiler: recsys_serve not built (its test is skipped)"
fi
touch "$STAMP"
echo "setup: .venv ready (torch $TORCH_VERSION, $FBGEMM_PKG, torchrec $TORCHREC_VERSION)"
