#!/usr/bin/env bash
# Wheels for the GPU machine, which has its own torch, torchvision, lightning and torchmetrics (Python 3.12,
# x86_64) and reaches no package index. Run where pip works, from the repository root:
#     bash benchmarks/prepare_gpu_wheels.sh        # fills .whl/ (git-ignored; carry it to the GPU machine)
# benchmarks/gpu_check.py then installs from it only what the machine lacks, with the machine's torch & co.
# pinned. No torch here: none of these packages depends on it. Not wandb, scipy or matplotlib: the check logs to
# CSV and imports neither, and the folder must stay under the device tool's 64 MiB carry (this one is ~30 MiB).
# When pyproject.toml has the `dali` extra, DALI (nvidia-dali-cuda120: CUDA 12 builds, which CUDA 13 drivers run)
# and its dependencies go to .whl-dali/ apart: its wheel alone is ~425 MB, over that carry, so it travels only
# where a larger transfer is allowed; without it the check's loader step records the dali path as skipped.
set -euo pipefail
dest="${1:-.whl}"
platform=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --platform manylinux2014_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any)
mkdir -p "$dest"
# hydra-core's parser runtime ships as a source archive only: build its (pure-Python) wheel here
python -m pip wheel --no-deps -w "$dest" "antlr4-python3-runtime==4.9.3"
python -m pip download --find-links "$dest" "${platform[@]}" -d "$dest" \
    "hydra-core>=1.3.2" "omegaconf>=2.3" "simplejpeg>=1.7" "rich>=13" "pytest>=8"
du -sh "$dest"
if grep -Eq '^dali *=' pyproject.toml; then
    dali="${DALI_DEST:-.whl-dali}"
    mkdir -p "$dali"
    python -m pip download "${platform[@]}" -d "$dali" nvidia-dali-cuda120
    du -sh "$dali"
fi
