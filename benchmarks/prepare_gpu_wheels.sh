#!/usr/bin/env bash
# Wheels for the GPU machine, which has its own torch, torchvision, lightning and torchmetrics (Python 3.12,
# x86_64) and reaches no package index. Run where pip works, from the repository root:
#     bash benchmarks/prepare_gpu_wheels.sh        # fills .whl/ (git-ignored; carry it to the GPU machine)
# benchmarks/gpu_check.py then installs from it only what the machine lacks, with the machine's torch & co.
# pinned. No torch here: none of these packages depends on it.
set -euo pipefail
dest="${1:-.whl}"
mkdir -p "$dest"
python -m pip download --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any -d "$dest" \
    "hydra-core>=1.3.2" "omegaconf>=2.3" "simplejpeg>=1.7" "rich>=13" "wandb>=0.17" "scipy" "matplotlib>=3.7" \
    "pytest>=8"
du -sh "$dest"
